// Core headers: Philox known answers, fp16/bf16 conversions, case strings, status, header checks.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "gradcomp/case_string.hpp"
#include "gradcomp/dtype.hpp"
#include "gradcomp/rng.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"
#include "gradcomp/wire_format.hpp"

namespace gradcomp {
namespace {

// Random123 tests/kat_vectors, the three "philox4x32 10" lines: ctr[4] key[2] -> out[4].
TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    Philox4x32 ctr;
    PhiloxKey key;
    Philox4x32 expected;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       {{0xffffffffu, 0xffffffffu}},
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0xa4093822u, 0x299f31d0u}},
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    const Philox4x32 out = philox4x32_10(k.ctr, k.key);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], k.expected.v[i]) << "word " << i;
  }
}

TEST(Philox, StreamsDependOnEveryKeyField) {
  const RngStream base(7, RngPurpose::kQsgdRounding, 3, 4, 5);
  const std::uint32_t w = base.words(11).v[0];
  EXPECT_NE(w, RngStream(8, RngPurpose::kQsgdRounding, 3, 4, 5).words(11).v[0]);
  EXPECT_NE(w, RngStream(7, RngPurpose::kTernGradRounding, 3, 4, 5).words(11).v[0]);
  EXPECT_NE(w, RngStream(7, RngPurpose::kQsgdRounding, 2, 4, 5).words(11).v[0]);
  EXPECT_NE(w, RngStream(7, RngPurpose::kQsgdRounding, 3, 5, 5).words(11).v[0]);
  EXPECT_NE(w, RngStream(7, RngPurpose::kQsgdRounding, 3, 4, 6).words(11).v[0]);
  EXPECT_NE(w, base.words(12).v[0]);
  EXPECT_NE(w, base.words(11, 1).v[0]);
  EXPECT_NE(w, base.words(11ull + (1ull << 32)).v[0]);  // the high element word is used
  EXPECT_EQ(w, RngStream(7, RngPurpose::kQsgdRounding, 3, 4, 5).words(11).v[0]);
}

TEST(Philox, UniformsAreInRangeAndRoughlyUniform) {
  const RngStream s(1, RngPurpose::kTestData, 0, 0, 0);
  const int n = 200000;
  double sum = 0, sumd = 0;
  int below_bound[10] = {0};
  for (int i = 0; i < n; ++i) {
    const float u = s.uniform_float(i);
    const double d = s.uniform_double(i);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    sum += u;
    sumd += d;
    const std::uint64_t b = s.uniform_below(10, i);
    ASSERT_LT(b, 10u);
    ++below_bound[b];
  }
  // Mean of U[0,1): sd of the mean is 1/sqrt(12 n) ~ 6.5e-4; 6 sigma.
  EXPECT_NEAR(sum / n, 0.5, 0.004);
  EXPECT_NEAR(sumd / n, 0.5, 0.004);
  for (int c : below_bound) EXPECT_NEAR(c, n / 10, 6 * std::sqrt(n * 0.09));
  EXPECT_EQ(RngStream::to_unit_float(0xffffffffu), 1.0f - 5.9604644775390625e-8f);
}

TEST(Philox, NormalHasUnitVariance) {
  const RngStream s(2, RngPurpose::kTestData, 0, 0, 0);
  const int n = 200000;
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    const double x = s.normal(i);
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 6 / std::sqrt(n));
  EXPECT_NEAR(sq / n, 1.0, 6 * std::sqrt(2.0 / n));
}

TEST(Philox, MulHi64MatchesWideMultiply) {
  const std::uint64_t vals[] = {0, 1, 2, 0xffffffffu, 0x100000000ull, 0xdeadbeefcafebabeull, ~0ull};
  for (auto a : vals) {
    for (auto b : vals) {
      __extension__ typedef unsigned __int128 u128;  // the wide multiply the test compares against
      const u128 p = static_cast<u128>(a) * b;
      EXPECT_EQ(RngStream::mulhi64(a, b), static_cast<std::uint64_t>(p >> 64)) << a << "*" << b;
    }
  }
}

// fp16 bit patterns from the IEEE 754 binary16 definition.
TEST(DType, Fp16KnownValues) {
  EXPECT_EQ(float_to_f16_bits(0.0f), 0x0000);
  EXPECT_EQ(float_to_f16_bits(-0.0f), 0x8000);
  EXPECT_EQ(float_to_f16_bits(1.0f), 0x3c00);
  EXPECT_EQ(float_to_f16_bits(-2.0f), 0xc000);
  EXPECT_EQ(float_to_f16_bits(65504.0f), 0x7bff);                  // largest finite
  EXPECT_EQ(float_to_f16_bits(65519.99f), 0x7bff);                 // below the midpoint
  EXPECT_EQ(float_to_f16_bits(65520.0f), 0x7c00);                  // midpoint: ties to even = Inf
  EXPECT_EQ(float_to_f16_bits(std::ldexp(1.0f, -24)), 0x0001);     // smallest subnormal
  EXPECT_EQ(float_to_f16_bits(std::ldexp(1.0f, -25)), 0x0000);     // half of it: tie to even 0
  EXPECT_EQ(float_to_f16_bits(std::ldexp(1.5f, -25)), 0x0001);     // above the tie
  EXPECT_EQ(float_to_f16_bits(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
  EXPECT_EQ(float_to_f16_bits(std::ldexp(1023.5f, -24)), 0x0400);  // subnormal rounds up to normal
  // 1 + 2^-11 is exactly between 1 and 1 + 2^-10: ties to even -> 1.
  EXPECT_EQ(float_to_f16_bits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(float_to_f16_bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_f16_bits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(float_to_f16_bits(std::nanf("")) & 0x7c00, 0x7c00);
  EXPECT_NE(float_to_f16_bits(std::nanf("")) & 0x03ff, 0);
}

TEST(DType, Fp16RoundTripsEveryHalf) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_bits_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_f16_bits(f), h) << std::hex << h;
  }
  EXPECT_EQ(f16_bits_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_bits_to_float(0x3555), 0.333251953125f);
}

TEST(DType, Bf16KnownValues) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(-1.0f), 0xbf80);
  // 1 + 2^-8 is the midpoint between bf16 1 and 1 + 2^-7: ties to even -> 1.
  EXPECT_EQ(float_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80);  // overflow -> Inf
  EXPECT_EQ(bf16_bits_to_float(0x4049), 3.140625f);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::nanf("")))));
}

TEST(DType, TokensRoundTrip) {
  for (const char* t : {"f32", "f16", "bf16", "f64", "s8", "u8", "s32", "u32"}) {
    DType dt;
    ASSERT_TRUE(dtype_parse(t, &dt)) << t;
    EXPECT_STREQ(dtype_name(dt), t);
    EXPECT_GT(dtype_size(dt), 0u);
  }
  DType dt;
  EXPECT_FALSE(dtype_parse("f8", &dt));
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF64), 8u);
}

TEST(CaseString, ParsesAndPrints) {
  auto r = parse_case_string("topk:density=0.001,n=1048579,seed=7");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->name, "topk");
  ASSERT_EQ(r->options.size(), 3u);
  EXPECT_EQ(r->options[1].first, "n");
  EXPECT_EQ(r->options[1].second, "1048579");
  EXPECT_EQ(r->to_string(), "topk:density=0.001,n=1048579,seed=7");
  EXPECT_TRUE(parse_case_string("sign").ok());
}

TEST(CaseString, RejectsMalformedText) {
  for (const char* bad : {"", ":n=1", "topk:", "topk:n", "topk:n=", "topk:=3", "topk:n=1,n=2",
                          "Topk:n=1", "topk:n=1,", "topk:n=1 2", "topk:a=b=c"}) {
    auto r = parse_case_string(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' was accepted";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(CaseString, NumbersRoundTripExactly) {
  for (double v : {0.001, 0.1, 1.0 / 3.0, 2.5, 1e-8, 0.0, 123456789.0, 0.015625}) {
    auto r = parse_double("x", format_double(v));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value(), v) << format_double(v);
  }
  EXPECT_EQ(format_double(0.001), "0.001");
  EXPECT_FALSE(parse_double("x", "1e999").ok());
  EXPECT_FALSE(parse_double("x", "nan").ok());
  EXPECT_FALSE(parse_double("x", "0.1abc").ok());
  EXPECT_FALSE(parse_uint("x", "-1").ok());
  EXPECT_FALSE(parse_uint("x", "99999999999999999999999").ok());
}

TEST(StatusTest, MessagesNameTheProblem) {
  Status s = make_status(StatusCode::kCorruptPayload, "index ", 5, " out of range");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.to_string(), "corrupt payload: index 5 out of range");
  EXPECT_TRUE(Status::success().ok());
  Result<int> r = make_status(StatusCode::kInvalidArgument, "nope");
  EXPECT_FALSE(r.ok());
  Result<int> v = 3;
  EXPECT_EQ(v.value(), 3);
}

TEST(SpanTest, ViewsAndSubspans) {
  std::vector<float> v = {1, 2, 3, 4};
  Span<float> s(v);
  Span<const float> c = s;
  EXPECT_EQ(c.size(), 4u);
  EXPECT_EQ(s.subspan(1, 2)[1], 3.0f);
  EXPECT_EQ(s.size_bytes(), 16u);
  EXPECT_TRUE(Span<float>().empty());
}

TEST(WireFormat, BitPackingIsLsbFirstInLittleEndianWords) {
  std::vector<std::uint8_t> buf(8, 0);
  BitWriter w(buf.data());
  w.put(1, 1);    // bit 0
  w.put(0, 30);   // bits 1..30
  w.put(1, 1);    // bit 31: top bit of word 0 = byte 3 bit 7
  w.put(0x5, 3);  // bits 32..34 = 1,0,1
  EXPECT_EQ(load_u32(buf.data()), 0x80000001u);
  EXPECT_EQ(load_u32(buf.data() + 4), 0x5u);
  BitReader r(buf.data());
  EXPECT_EQ(r.get(1), 1u);
  EXPECT_EQ(r.get(30), 0u);
  EXPECT_EQ(r.get(1), 1u);
  EXPECT_EQ(r.get(3), 5u);
  EXPECT_TRUE(padding_is_zero(buf.data(), 35, 8));
  buf[7] = 0x80;
  EXPECT_FALSE(padding_is_zero(buf.data(), 35, 8));
  EXPECT_EQ(packed_bytes(33, 1), 8u);
  EXPECT_EQ(packed_bytes(32, 1), 4u);
  EXPECT_EQ(packed_bytes(0, 2), 0u);
}

TEST(WireFormat, HeaderChecksEveryField) {
  WireHeader h;
  h.compressor = static_cast<std::uint8_t>(CompressorKind::kSign);
  h.n = 40;
  h.step = 3;
  h.tensor_id = 9;
  h.count = 40;
  h.body_bytes = 8;
  std::vector<std::uint8_t> p(kHeaderBytes + 8, 0);
  write_header(h, p.data());
  WireHeader out;
  ASSERT_TRUE(read_header(p, CompressorKind::kSign, 40, 3, 9, &out).ok());
  EXPECT_EQ(out.count, 40u);
  EXPECT_EQ(p[0], 'G');
  EXPECT_EQ(p[3], 'P');
  auto expect_reject = [&](std::vector<std::uint8_t> q, CompressorKind kind, std::uint64_t n,
                           std::uint32_t step, std::uint32_t tensor, const char* what) {
    Status s = read_header(q, kind, n, step, tensor, &out);
    EXPECT_EQ(s.code(), StatusCode::kCorruptPayload) << what;
    return s.message();
  };
  auto q = p;
  q[0] ^= 1;
  EXPECT_NE(expect_reject(q, CompressorKind::kSign, 40, 3, 9, "magic").find("magic"),
            std::string::npos);
  q = p;
  q[4] = 2;
  EXPECT_NE(expect_reject(q, CompressorKind::kSign, 40, 3, 9, "version").find("version"),
            std::string::npos);
  EXPECT_NE(expect_reject(p, CompressorKind::kTopK, 40, 3, 9, "kind").find("compressor"),
            std::string::npos);
  q = p;
  q[7] = 0x80;
  EXPECT_NE(expect_reject(q, CompressorKind::kSign, 40, 3, 9, "flags").find("flag"),
            std::string::npos);
  EXPECT_NE(expect_reject(p, CompressorKind::kSign, 41, 3, 9, "n").find("n ="), std::string::npos);
  EXPECT_NE(expect_reject(p, CompressorKind::kSign, 40, 4, 9, "step").find("step"),
            std::string::npos);
  EXPECT_NE(expect_reject(p, CompressorKind::kSign, 40, 3, 8, "tensor").find("tensor_id"),
            std::string::npos);
  q = p;
  q.pop_back();
  EXPECT_NE(expect_reject(q, CompressorKind::kSign, 40, 3, 9, "short").find("truncated"),
            std::string::npos);
  q.resize(10);
  EXPECT_NE(expect_reject(q, CompressorKind::kSign, 40, 3, 9, "tiny").find("header"),
            std::string::npos);
}

}  // namespace
}  // namespace gradcomp
