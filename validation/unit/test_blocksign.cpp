// blocksign oracle: known answers (algorithms.md §8 example 1), the per-block contraction
// identity, norm preservation of scale=l2, the formula re-derived here, payload sizes,
// corrupted payloads and the corner-case policy.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;

// Scaled sign written directly from algorithms.md §4.1.
std::vector<float> blocksign_formula(const CompressorDesc& d, const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (const Segment& b : sign_blocks(d)) {
    double l1 = 0, l2 = 0;
    for (std::uint64_t j = b.offset; j < b.offset + b.size; ++j) {
      l1 += std::fabs(double(v[j]));
      l2 += double(v[j]) * v[j];
    }
    float s = 1.0f;
    if (d.scale == SignScale::kL1) s = static_cast<float>(l1 / double(b.size));
    if (d.scale == SignScale::kL2)
      s = static_cast<float>(std::sqrt(l2) / std::sqrt(double(b.size)));
    for (std::uint64_t j = b.offset; j < b.offset + b.size; ++j) out[j] = v[j] < 0 ? -s : s;
  }
  return out;
}

// §8 example 1: block size 2, v = [0.5, -1.5, 0.0, 2.0, -0.25]:
// blocks [0.5, -1.5] [0, 2] [-0.25] -> L1 scales (0.5+1.5)/2 = 1, (0+2)/2 = 1, 0.25/1 = 0.25
// -> C(v) = [1, -1, 1, 1, -0.25], residual v - C(v) = [-0.5, -0.5, -1, 1, 0].
// Sign bits: elements 1 and 4 are negative -> word 0b10010 = 0x12.
// Scales: 1.0f = 0x3F800000, 0.25f = 0x3E800000. count = 3 blocks, body 4 + 12 = 16 bytes.
TEST(BlockSign, KnownAnswerExample1) {
  const auto d = desc_or_die("blocksign:n=5,block=2,scale=l1");
  const std::vector<float> v = {0.5f, -1.5f, 0.0f, 2.0f, -0.25f};
  std::vector<std::uint8_t> p;
  const auto out = test::roundtrip(d, v, {}, &p);
  auto expected = test::expected_header(CompressorKind::kBlockSign, 5, 3, 16);
  test::append_bytes(expected,
                     {0x12, 0, 0, 0, 0, 0, 0x80, 0x3F, 0, 0, 0x80, 0x3F, 0, 0, 0x80, 0x3E});
  EXPECT_EQ(p, expected);
  EXPECT_EQ(out, (std::vector<float>{1.0f, -1.0f, 1.0f, 1.0f, -0.25f}));
  const std::vector<float> residual = {-0.5f, -0.5f, -1.0f, 1.0f, 0.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(v[i] - out[i], residual[i]) << i;
}

// block = 4, v = [3, -4, 0, 0, 5]: L2 scales sqrt(9+16)/sqrt(4) = 2.5 and sqrt(25)/1 = 5;
// C(v) = [2.5, -2.5, 2.5, 2.5, 5]. Sign word 0x02; 2.5f = 0x40200000, 5.0f = 0x40A00000.
// scale=none: same bits, no scales (count still 2 blocks), decodes to [1, -1, 1, 1, 1].
TEST(BlockSign, KnownAnswerL2AndNone) {
  const std::vector<float> v = {3.0f, -4.0f, 0.0f, 0.0f, 5.0f};
  std::vector<std::uint8_t> p;
  const auto d2 = desc_or_die("blocksign:n=5,block=4,scale=l2");
  auto out = test::roundtrip(d2, v, {}, &p);
  auto expected = test::expected_header(CompressorKind::kBlockSign, 5, 2, 12);
  test::append_bytes(expected, {0x02, 0, 0, 0, 0, 0, 0x20, 0x40, 0, 0, 0xA0, 0x40});
  EXPECT_EQ(p, expected);
  EXPECT_EQ(out, (std::vector<float>{2.5f, -2.5f, 2.5f, 2.5f, 5.0f}));

  const auto dn = desc_or_die("blocksign:n=5,block=4,scale=none");
  out = test::roundtrip(dn, v, {}, &p);
  expected = test::expected_header(CompressorKind::kBlockSign, 5, 2, 4);
  test::append_bytes(expected, {0x02, 0, 0, 0});
  EXPECT_EQ(p, expected);
  EXPECT_EQ(out, (std::vector<float>{1.0f, -1.0f, 1.0f, 1.0f, 1.0f}));
}

// Per block (L1 scale): ||v - C(v)||^2 = ||v||^2 - ||v||_1^2 / d_b <= (1 - 1/d_b) ||v||^2.
// L2 scale preserves the block norm: ||C(v)_b|| = ||v_b||.
TEST(BlockSign, ContractionIdentityAndL2NormPerBlock) {
  for (std::uint64_t n : {1ull, 33ull, 1000ull, 4097ull}) {
    for (std::uint64_t block : {0ull, 1ull, 3ull, 32ull, 100ull}) {
      const auto v = test::normal_data(n, n + block);
      const std::string base =
          "blocksign:n=" + std::to_string(n) + ",block=" + std::to_string(block);
      const auto out1 = test::roundtrip(desc_or_die(base + ",scale=l1"), v);
      const auto out2 = test::roundtrip(desc_or_die(base + ",scale=l2"), v);
      for (const Segment& b : sign_blocks(desc_or_die(base))) {
        double sq = 0, l1 = 0, res = 0, norm2 = 0;
        for (std::uint64_t j = b.offset; j < b.offset + b.size; ++j) {
          sq += double(v[j]) * v[j];
          l1 += std::fabs(double(v[j]));
          res += (double(v[j]) - out1[j]) * (double(v[j]) - out1[j]);
          norm2 += double(out2[j]) * out2[j];
        }
        const double d_b = double(b.size);
        EXPECT_NEAR(res, sq - l1 * l1 / d_b, 1e-6 * sq) << base << " block at " << b.offset;
        EXPECT_LE(res, (1 - 1 / d_b) * sq * (1 + 1e-6) + 1e-30) << base;
        EXPECT_NEAR(norm2, sq, 1e-6 * sq) << base << " block at " << b.offset;
      }
    }
  }
}

TEST(BlockSign, MatchesTheFormulaAtEdgeSizes) {
  for (const char* scale : {"l1", "l2", "none"}) {
    for (std::uint64_t block : {0ull, 7ull, 32ull, 1000ull}) {
      for (std::uint64_t n : test::edge_sizes()) {
        if (n > 5000 && block != 0 && block != 1000) continue;  // keep the test fast
        const auto d = desc_or_die("blocksign:n=" + std::to_string(n) +
                                   ",block=" + std::to_string(block) + ",scale=" + scale);
        const auto v = test::normal_data(n, 3);
        std::vector<std::uint8_t> p;
        EXPECT_EQ(test::roundtrip(d, v, {}, &p), blocksign_formula(d, v)) << d.to_string();
        if (n > 0 && n <= 4097 && block == 7) test::expect_truncations_rejected(d, p);
      }
    }
  }
}

// Positive homogeneity C(2v) = 2C(v) (2 is exact in binary) and sign(-0) = +.
TEST(BlockSign, HomogeneousAndSignOfZero) {
  const auto d = desc_or_die("blocksign:n=100,block=9");
  const auto v = test::normal_data(100, 6);
  std::vector<float> v2(v);
  for (float& x : v2) x *= 2;
  const auto a = test::roundtrip(d, v), b = test::roundtrip(d, v2);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b[i], 2 * a[i]);
  // Block [1, -0.0, 0]: sign bits 0 for -0.0 and 0 -> decoded +s.
  const auto dz = desc_or_die("blocksign:n=3,block=3");
  std::vector<std::uint8_t> p;
  const auto out = test::roundtrip(dz, {1.0f, -0.0f, 0.0f}, {}, &p);
  EXPECT_EQ(p[kHeaderBytes], 0);
  const float s = static_cast<float>(1.0 / 3.0);
  EXPECT_EQ(out, (std::vector<float>{s, s, s}));  // single non-zero: s = |v_j| / d_b
}

TEST(BlockSign, TensorLayoutGivesOneBlockPerSegment) {
  const auto d = desc_or_die("blocksign:shapes=2x3/5/4x1,block=0");
  const auto v = test::normal_data(d.n, 9);
  std::vector<std::uint8_t> p;
  const auto out = test::roundtrip(d, v, {}, &p);
  EXPECT_EQ(load_u32(p.data() + 24), 3u);  // count = 3 blocks
  EXPECT_EQ(p.size(), 32u + 4 + 12);
  // Block 1 = elements 6..10 (one tensor of 5): scale = mean |v| over exactly those.
  double l1 = 0;
  for (int j = 6; j < 11; ++j) l1 += std::fabs(double(v[j]));
  for (int j = 6; j < 11; ++j) EXPECT_EQ(std::fabs(out[j]), static_cast<float>(l1 / 5)) << j;
  EXPECT_EQ(out, blocksign_formula(d, v));
}

// payload = 32 + 4 ceil(n / 32) + 4 B (B = blocks; no scales for scale=none).
TEST(BlockSign, PayloadSizeFormula) {
  for (std::uint64_t n : {0ull, 1ull, 31ull, 32ull, 33ull, 1000ull, 4097ull, 1048579ull}) {
    for (std::uint64_t block : {0ull, 1ull, 7ull, 32ull, 4096ull}) {
      if (block == 1 && n > 5000) continue;
      const std::uint64_t blocks = block == 0 ? (n > 0 ? 1 : 0) : (n + block - 1) / block;
      const std::string base =
          "blocksign:n=" + std::to_string(n) + ",block=" + std::to_string(block);
      EXPECT_EQ(ref::payload_bytes(desc_or_die(base)), 32 + 4 * ((n + 31) / 32) + 4 * blocks)
          << base;
      EXPECT_EQ(ref::payload_bytes(desc_or_die(base + ",scale=none")), 32 + 4 * ((n + 31) / 32))
          << base;
    }
  }
}

TEST(BlockSign, CornerCases) {
  // n = 0: header only, count 0.
  EXPECT_EQ(test::compress_ok(desc_or_die("blocksign:n=0"), {}),
            test::expected_header(CompressorKind::kBlockSign, 0, 0, 0));
  // n = 1 (d_b = 1): exact for both scales.
  for (const char* scale : {"l1", "l2"}) {
    EXPECT_EQ(test::roundtrip(desc_or_die(std::string("blocksign:n=1,scale=") + scale), {-0.3f}),
              std::vector<float>{-0.3f});
  }
  // All-zero block: scale 0, output +0 (no division), next to a non-zero block.
  std::vector<float> v(64, 0.0f);
  v[40] = -2.0f;
  const auto out = test::roundtrip(desc_or_die("blocksign:n=64,block=32"), v);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.0f);
  for (int i = 32; i < 64; ++i) EXPECT_EQ(out[i], i == 40 ? -2.0f / 32 : 2.0f / 32);
}

TEST(BlockSign, NonFinitePolicy) {
  auto v = test::normal_data(20, 2);
  v[13] = std::numeric_limits<float>::infinity();
  std::vector<std::uint8_t> p;
  EXPECT_EQ(ref::compress(desc_or_die("blocksign:n=20,block=10"), {}, v, p).code(),
            StatusCode::kNonFinite);
  const auto dp = desc_or_die("blocksign:n=20,block=10,nonfinite=propagate");
  const auto out = test::roundtrip(dp, v, {}, &p);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(std::isfinite(out[i]));
  for (int i = 10; i < 20; ++i) EXPECT_TRUE(std::isinf(out[i]));  // scale of block 1 is Inf
  // The same payload is refused under nonfinite=error (its scale is not finite).
  EXPECT_EQ(test::decode(desc_or_die("blocksign:n=20,block=10"), p).code(),
            StatusCode::kCorruptPayload);
  // A NaN with the sign bit set: the L2 scale is NaN, written as the canonical +NaN.
  v[13] = -std::nanf("");
  const auto dl2 = desc_or_die("blocksign:n=20,block=10,scale=l2,nonfinite=propagate");
  const auto on = test::roundtrip(dl2, v, {}, &p);
  for (int i = 10; i < 20; ++i) EXPECT_TRUE(std::isnan(on[i]));
  EXPECT_EQ(load_u32(p.data() + kHeaderBytes + 4 + 4), 0x7FC00000u);
}

TEST(BlockSign, CorruptPayloadsAreRejected) {
  // n = 40 (2 words of bits, 24 padding bits), block 16 -> 3 scales at body bytes 8, 12, 16.
  const auto d = desc_or_die("blocksign:n=40,block=16");
  const auto good = test::compress_ok(d, test::normal_data(40, 5));
  ASSERT_EQ(good.size(), kHeaderBytes + 20);
  ASSERT_TRUE(test::decode(d, good).ok());
  auto p = good;
  p[kHeaderBytes + 5] |= 0x01;  // bit 40: first padding bit
  test::expect_corrupt(d, p, "padding", {}, "padding");
  for (float bad : {-0.5f, -0.0f, std::nanf(""), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::infinity()}) {
    p = good;
    store_f32(p.data() + kHeaderBytes + 12, bad);
    test::expect_corrupt(d, p, "scale[1]", {}, "bad scale");
  }
  // A wrong count, the dense flag, a body longer than the descriptor's, truncations.
  test::expect_header_corruptions_rejected(d, good, 2);
  // scale=none has no scales: a payload with scales is refused by a scale=none decoder.
  Status s = test::decode(desc_or_die("blocksign:n=40,block=16,scale=none"), good);
  EXPECT_EQ(s.code(), StatusCode::kCorruptPayload);
  EXPECT_NE(s.message().find("body"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace gradcomp
