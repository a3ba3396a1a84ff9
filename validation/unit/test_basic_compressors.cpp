// identity, fp16, bf16, sign and topk: known answers written from the wire-format definition,
// properties, and every corrupted-payload case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

TEST(Identity, KnownAnswerBytesAndExactRoundTrip) {
  const auto d = desc_or_die("identity:n=3");
  const std::vector<float> v = {1.0f, -0.0f, std::ldexp(1.0f, -140)};  // includes a denormal
  auto p = test::compress_ok(d, v);
  auto want = test::expected_header(1, 3, 3, 12);
  // 1.0f = 0x3f800000, -0.0f = 0x80000000, 2^-140 = 2^9 * 2^-149 = 0x00000200 (denormal), LE.
  test::append_bytes(want,
                     {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x80, 0x00, 0x02, 0x00, 0x00});
  EXPECT_EQ(p, want);
  auto out = roundtrip(d, v);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(float_bits(out[i]), float_bits(v[i]));
}

TEST(Fp16, KnownAnswerBytes) {
  const auto d = desc_or_die("fp16:n=4");
  // 1 -> 0x3c00, -2 -> 0xc000, 65504 -> 0x7bff (largest half), 1e-8 < 2^-25 -> +0.
  auto p = test::compress_ok(d, {1.0f, -2.0f, 65504.0f, 1e-8f});
  auto want = test::expected_header(2, 4, 4, 8);
  test::append_bytes(want, {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x00, 0x00});
  EXPECT_EQ(p, want);
  auto out = roundtrip(d, {1.0f, -2.0f, 65504.0f, 1e-8f});
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f, 65504.0f, 0.0f}));
}

TEST(Fp16, OverflowIsAnErrorUnlessPropagating) {
  std::vector<std::uint8_t> p = {9, 9};
  Status s = ref::compress(desc_or_die("fp16:n=2"), {}, std::vector<float>{1.0f, 70000.0f}, p);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite);
  EXPECT_NE(s.message().find("input[1]"), std::string::npos) << s.message();
  EXPECT_EQ(p, (std::vector<std::uint8_t>{9, 9})) << "payload must be untouched on error";
  auto out = roundtrip(desc_or_die("fp16:n=2,nonfinite=propagate"), {1.0f, 70000.0f});
  EXPECT_TRUE(std::isinf(out[1]));
}

TEST(Fp16, RelativeErrorWithinHalfUlp) {
  const auto v = test::normal_data(4097, 3);
  const auto out = roundtrip(desc_or_die("fp16:n=4097"), v);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (std::fabs(v[i]) < 6.2e-5f) continue;  // subnormal halves have absolute, not relative, error
    EXPECT_LE(std::fabs(out[i] - v[i]), std::fabs(v[i]) * std::ldexp(1.0, -11)) << i;
  }
}

TEST(Bf16, KnownAnswerBytes) {
  const auto d = desc_or_die("bf16:n=2");
  // pi as float = 0x40490fdb: the dropped half 0x0fdb < 0x8000 rounds down -> 0x4049 = 3.140625.
  auto p = test::compress_ok(d, {1.0f, 3.14159274f});
  auto want = test::expected_header(3, 2, 2, 4);
  test::append_bytes(want, {0x80, 0x3f, 0x49, 0x40});
  EXPECT_EQ(p, want);
  EXPECT_EQ(roundtrip(d, {1.0f, 3.14159274f}), (std::vector<float>{1.0f, 3.140625f}));
}

TEST(Sign, KnownAnswerBytes) {
  const auto d = desc_or_die("sign:n=6");
  // Bits set iff v < 0: elements 1 and 5 -> word 0b100010 = 0x22. -0.0 and 0 are "+".
  const std::vector<float> v = {0.5f, -1.5f, 0.0f, -0.0f, 2.0f, -0.25f};
  auto p = test::compress_ok(d, v);
  auto want = test::expected_header(4, 6, 6, 4);
  test::append_bytes(want, {0x22, 0x00, 0x00, 0x00});
  EXPECT_EQ(p, want);
  EXPECT_EQ(roundtrip(d, v), (std::vector<float>{1, -1, 1, 1, 1, -1}));
}

TEST(Sign, PayloadFormulaAndSizes) {
  for (std::uint64_t n : test::edge_sizes()) {
    const auto d = desc_or_die("sign:n=" + std::to_string(n));
    const auto v = test::normal_data(n, 5);
    std::vector<std::uint8_t> p;
    const auto out = roundtrip(d, v, {}, &p);
    EXPECT_EQ(p.size(), 32 + 4 * ((n + 31) / 32)) << n;
    EXPECT_EQ(ref::payload_bytes(d), p.size());
    for (std::uint64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], v[i] < 0 ? -1.0f : 1.0f) << i;
  }
}

TEST(Sign, RejectsNonZeroPaddingAndBadCount) {
  const auto d = desc_or_die("sign:n=33");
  auto p = test::compress_ok(d, test::normal_data(33, 1));
  test::expect_truncations_rejected(d, p);
  std::vector<float> out(33);
  auto q = p;
  q[32 + 4] |= 0x02;  // bit 33 of the stream: the first padding bit after element 32
  Status s = ref::decompress(d, {}, q, Span<float>(out));
  EXPECT_EQ(s.code(), StatusCode::kCorruptPayload);
  EXPECT_NE(s.message().find("padding"), std::string::npos) << s.message();
  q = p;
  q[24] = 32;  // count
  EXPECT_EQ(ref::decompress(d, {}, q, Span<float>(out)).code(), StatusCode::kCorruptPayload);
}

TEST(TopK, WorkedExampleTies) {
  // algorithms.md §8 example 6: v = [3, -3, 1, 2], k = 1 -> [3, 0, 0, 0] (lower index wins).
  const std::vector<float> v = {3, -3, 1, 2};
  auto p = test::compress_ok(desc_or_die("topk:n=4,k=1"), v);
  auto want = test::expected_header(8, 4, 1, 8);
  test::append_bytes(want, {0, 0, 0, 0, 0x00, 0x00, 0x40, 0x40});  // idx 0, 3.0f
  EXPECT_EQ(p, want);
  EXPECT_EQ(roundtrip(desc_or_die("topk:n=4,k=1"), v), (std::vector<float>{3, 0, 0, 0}));
  EXPECT_EQ(roundtrip(desc_or_die("topk:n=4,k=2"), v), (std::vector<float>{3, -3, 0, 0}));
  EXPECT_EQ(roundtrip(desc_or_die("topk:n=4,k=3"), v), (std::vector<float>{3, -3, 0, 2}));
}

TEST(TopK, KZeroSendsNothingAndKAtLeastNSendsDense) {
  const std::vector<float> v = {1, -2, 3};
  auto p = test::compress_ok(desc_or_die("topk:n=3,density=0"), v);
  EXPECT_EQ(p, test::expected_header(8, 3, 0, 0));
  EXPECT_EQ(roundtrip(desc_or_die("topk:n=3,density=0"), v), (std::vector<float>{0, 0, 0}));
  p = test::compress_ok(desc_or_die("topk:n=3,k=7"), v);
  ASSERT_EQ(p.size(), 32u + 12u);
  EXPECT_EQ(p[7], kFlagDense);
  EXPECT_EQ(roundtrip(desc_or_die("topk:n=3,k=7"), v), v);
  EXPECT_EQ(roundtrip(desc_or_die("topk:n=1,density=0.001"), {-5.0f}), (std::vector<float>{-5}));
}

TEST(TopK, KeepsTheLargestAndContracts) {
  for (std::uint64_t n : test::edge_sizes()) {
    if (n == 0) continue;
    const auto d = desc_or_die("topk:density=0.01,n=" + std::to_string(n));
    const std::uint64_t k = sparsifier_k(d, n);
    EXPECT_EQ(k, std::min<std::uint64_t>(n, std::max<std::uint64_t>(1, (n + 99) / 100))) << n;
    const auto v = test::normal_data(n, 9);
    std::vector<std::uint8_t> p;
    const auto out = roundtrip(d, v, {}, &p);
    EXPECT_EQ(p.size(), k >= n ? 32 + 4 * n : 32 + 8 * k);
    EXPECT_EQ(p.size(), ref::payload_bytes(d));
    float min_kept = std::numeric_limits<float>::infinity(), max_dropped = 0;
    std::uint64_t kept = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      if (out[i] != 0) {
        ASSERT_EQ(out[i], v[i]);
        min_kept = std::min(min_kept, std::fabs(v[i]));
        ++kept;
      } else {
        max_dropped = std::max(max_dropped, std::fabs(v[i]));
      }
    }
    EXPECT_EQ(kept, k);
    EXPECT_GE(min_kept, max_dropped) << n;
    // ||v - C(v)||^2 <= (1 - k/n) ||v||^2
    std::vector<float> r(n);
    for (std::uint64_t i = 0; i < n; ++i) r[i] = v[i] - out[i];
    EXPECT_LE(test::sum_sq(r), (1.0 - static_cast<double>(k) / static_cast<double>(n)) *
                                   test::sum_sq(v) * (1 + 1e-12))
        << n;
  }
}

TEST(TopK, RejectsCorruptIndices) {
  const auto d = desc_or_die("topk:n=100,k=3");
  std::vector<float> v(100, 0.0f);
  v[10] = 5;
  v[20] = -6;
  v[30] = 7;
  auto p = test::compress_ok(d, v);
  test::expect_truncations_rejected(d, p);
  auto q = p;
  store_u32(q.data() + 32 + 4, 10);  // second index equal to the first
  test::expect_corrupt(d, q, "strictly increasing");
  q = p;
  store_u32(q.data() + 32 + 8, 100);  // == n
  test::expect_corrupt(d, q, "out of range");
  q = p;
  q[7] = kFlagDense;
  test::expect_corrupt(d, q, "dense flag");
  q = p;
  store_u32(q.data() + 24, 2);  // count
  test::expect_corrupt(d, q, "count");
}

TEST(Dispatcher, DecodedNonFiniteValuesAreCorruptUnderTheErrorPolicy) {
  // An identity payload carrying a NaN bit pattern: rejected under nonfinite=error, passed
  // through under nonfinite=propagate.
  const auto d = desc_or_die("identity:n=2");
  auto p = test::compress_ok(d, {1.0f, 2.0f});
  store_u32(p.data() + 32 + 4, 0x7fc00000u);
  std::vector<float> out(2, 5.0f);
  Status s = ref::decompress(d, {}, p, Span<float>(out));
  EXPECT_EQ(s.code(), StatusCode::kCorruptPayload);
  EXPECT_NE(s.message().find("decoded element [1]"), std::string::npos) << s.message();
  EXPECT_EQ(out, (std::vector<float>{5.0f, 5.0f}));
  const auto dp = desc_or_die("identity:n=2,nonfinite=propagate");
  ASSERT_TRUE(ref::decompress(dp, {}, p, Span<float>(out)).ok());
  EXPECT_TRUE(std::isnan(out[1]));
}

TEST(Dispatcher, RejectsSizeMismatchAndKeepsOutputs) {
  const auto d = desc_or_die("sign:n=4");
  std::vector<std::uint8_t> p = {1, 2, 3};
  EXPECT_EQ(ref::compress(d, {}, std::vector<float>(3), p).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p, (std::vector<std::uint8_t>{1, 2, 3}));
  auto good = test::compress_ok(d, {1, 2, 3, 4});
  std::vector<float> out(5, 7.0f);
  EXPECT_EQ(ref::decompress(d, {}, good, Span<float>(out)).code(), StatusCode::kInvalidArgument);
  std::vector<float> out4(4, 7.0f);
  auto bad = good;
  bad[32] = 0xff;
  bad[35] = 0x01;  // padding bit 24
  EXPECT_FALSE(ref::decompress(d, {}, bad, Span<float>(out4)).ok());
  EXPECT_EQ(out4, std::vector<float>(4, 7.0f)) << "output must be untouched on error";
  ref::CompressContext other;
  other.step = 1;
  Status s = ref::decompress(d, other, good, Span<float>(out4));
  EXPECT_EQ(s.code(), StatusCode::kCorruptPayload);
  EXPECT_NE(s.message().find("sign: "), std::string::npos) << "message names the compressor";
}

}  // namespace
}  // namespace gradcomp
