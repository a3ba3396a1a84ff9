// qsgd oracle: known answers (algorithms.md §8 example 4), the QSGD formula re-derived here
// independently, unbiasedness and variance (with a biased negative control), payload sizes,
// corrupted payloads and the corner-case policy.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;

// QSGD written directly from algorithms.md §4.3 (one call per bucket), for comparison with
// the oracle: norm in double rounded to f32, r = s|v|/N, level = floor(r) + [u < frac(r)].
std::vector<float> qsgd_formula(const CompressorDesc& d, const ref::CompressContext& ctx,
                                const std::vector<float>& v) {
  const RngStream rng(d.seed, RngPurpose::kQsgdRounding, ctx.step, ctx.tensor_id, ctx.rank);
  std::vector<float> out(v.size(), 0.0f);
  for (const Segment& b : qsgd_buckets(d)) {
    double acc = 0;
    for (std::uint64_t j = b.offset; j < b.offset + b.size; ++j) {
      const double a = std::fabs(double(v[j]));
      acc = d.norm == QsgdNorm::kL2 ? acc + a * a : std::max(acc, a);
    }
    const float N = static_cast<float>(d.norm == QsgdNorm::kL2 ? std::sqrt(acc) : acc);
    if (N == 0.0f) continue;
    for (std::uint64_t j = b.offset; j < b.offset + b.size; ++j) {
      const double r = d.levels * std::fabs(double(v[j])) / N;
      const double l = std::floor(r);
      const double level = std::min<double>(d.levels, l + (rng.uniform_float(j) < r - l));
      out[j] = static_cast<float>(N * (v[j] < 0 ? -level : level) / d.levels);
    }
  }
  return out;
}

// §8 example 4: L2, s = 2, v = [3, -4, 0]: ||v|| = 5, r = [1.2, 1.6, 0], p = [0.2, 0.6, 0].
// With u = [<0.2, >=0.6, *]: levels [2, 1, 0] -> Q(v) = [5, -2.5, 0].
// L = ceil(log2 3) = 2, so each code is 3 bits: sign | level << 1.
//   code0 = 0 | 2<<1 = 0b100, code1 = 1 | 1<<1 = 0b011, code2 = 0.
//   bits 0..2 = 100, bits 3..5 = 011: word = 0b011100 = 0x1C.
// Body: 1C 00 00 00 | norm 5.0f = 0x40A00000 -> 00 00 A0 40.  count = 1 bucket, 8 body bytes.
TEST(Qsgd, KnownAnswerExample4) {
  ref::CompressContext ctx;
  ctx.step = 3;
  ctx.tensor_id = 4;
  ctx.rank = 2;
  const std::uint64_t seed = test::find_seed(
      RngPurpose::kQsgdRounding, 3, 4, 2,
      [](const RngStream& s) { return s.uniform_float(0) < 0.15f && s.uniform_float(1) >= 0.65f; });
  const auto d = desc_or_die("qsgd:n=3,levels=2,norm=l2,seed=" + std::to_string(seed));
  const std::vector<float> v = {3.0f, -4.0f, 0.0f};
  const auto p = test::compress_ok(d, v, ctx);
  auto expected = test::expected_header_at(CompressorKind::kQsgd, 3, 3, 4, 1, 8);
  test::append_bytes(expected, {0x1C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xA0, 0x40});
  EXPECT_EQ(p, expected);
  std::vector<float> out;
  ASSERT_TRUE(test::decode(d, p, &out, ctx).ok());
  EXPECT_EQ(out, (std::vector<float>{5.0f, -2.5f, 0.0f}));

  // Other draw: u = [>=0.2, <0.6]: levels [1, 2, 0] -> Q(v) = [2.5, -5, 0].
  // code0 = 0b010, code1 = 1 | 2<<1 = 0b101: word = 0b101010 = 0x2A.
  const std::uint64_t seed2 = test::find_seed(
      RngPurpose::kQsgdRounding, 3, 4, 2,
      [](const RngStream& s) { return s.uniform_float(0) >= 0.25f && s.uniform_float(1) < 0.55f; });
  const auto d2 = desc_or_die("qsgd:n=3,levels=2,norm=l2,seed=" + std::to_string(seed2));
  const auto p2 = test::compress_ok(d2, v, ctx);
  expected[kHeaderBytes] = 0x2A;
  EXPECT_EQ(p2, expected);
  ASSERT_TRUE(test::decode(d2, p2, &out, ctx).ok());
  EXPECT_EQ(out, (std::vector<float>{2.5f, -5.0f, 0.0f}));
}

// norm=max makes r = s|v|/max integral here, so no randomness: v = [-2, 1, 0.5, 2], s = 4,
// N = 2, r = [4, 2, 1, 4] -> levels [4, 2, 1, 4], Q(v) = v. L = ceil(log2 5) = 3: 4-bit codes
// code = sign | level << 1: [1|8 = 9, 4, 2, 8] -> nibbles LSB first: 0x9, 0x4, 0x2, 0x8
// -> bytes 0x49, 0x82. Bucket 2 -> two buckets: [-2, 1] N = 2, [0.5, 2] N = 2.
//   bucket0 r = [4, 2], bucket1 r = [1, 4]: same levels. Norms 2.0f = 0x40000000.
TEST(Qsgd, KnownAnswerMaxNormTwoBuckets) {
  const auto d = desc_or_die("qsgd:n=4,levels=4,norm=max,bucket=2,seed=9");
  const std::vector<float> v = {-2.0f, 1.0f, 0.5f, 2.0f};
  const auto p = test::compress_ok(d, v);
  auto expected = test::expected_header_at(CompressorKind::kQsgd, 4, 0, 0, 2, 12);
  test::append_bytes(expected, {0x49, 0x82, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0x40});
  EXPECT_EQ(p, expected);
  std::vector<float> out;
  ASSERT_TRUE(test::decode(d, p, &out).ok());
  EXPECT_EQ(out, v);
}

TEST(Qsgd, MatchesTheFormulaAtEdgeSizesAndOptions) {
  const char* variants[] = {"levels=1,norm=l2,bucket=512", "levels=7,norm=max,bucket=100",
                            "levels=3,norm=l2,bucket=0", "levels=127,norm=max,bucket=1",
                            "levels=1000000,norm=l2,bucket=4096"};
  for (const char* opts : variants) {
    for (std::uint64_t n : test::edge_sizes()) {
      if (n > 5000 && std::string(opts).find("levels=1,") == std::string::npos) continue;
      const auto d = desc_or_die("qsgd:seed=5,n=" + std::to_string(n) + "," + opts);
      const auto ctx = test::context_at(7, 1, 3);
      test::expect_matches_formula(d, ctx, 21,
                                   [&](const auto& v) { return qsgd_formula(d, ctx, v); });
    }
  }
}

TEST(Qsgd, MultiTensorLayoutUsesOneBucketPerSegment) {
  const auto d = desc_or_die("qsgd:shapes=3x5/7/2x2x2,bucket=0,levels=2,seed=1");
  const auto v = test::normal_data(d.n, 4);
  std::vector<std::uint8_t> p;
  const auto out = test::roundtrip(d, v, {}, &p);
  EXPECT_EQ(load_u32(p.data() + 24), 3u);  // count = 3 buckets
  EXPECT_EQ(out, qsgd_formula(d, {}, v));
}

// payload = 32 + 4 * ceil(n (1 + L) / 32) + 4 * ceil(n / b) bytes, L = ceil(log2(s + 1)).
TEST(Qsgd, PayloadSizeFormula) {
  const std::uint32_t level_bits[][2] = {{1, 1}, {2, 2},   {3, 2},   {4, 3},  {7, 3},
                                         {8, 4}, {127, 7}, {128, 8}, {255, 8}};
  for (auto [s, L] : level_bits) {
    EXPECT_EQ(qsgd_level_bits(s), L) << s;
    for (std::uint64_t n : {0ull, 1ull, 5ull, 31ull, 32ull, 33ull, 511ull, 512ull, 513ull, 1000ull,
                            4097ull, 1048579ull}) {
      for (std::uint64_t b : {1ull, 7ull, 512ull}) {
        if (b == 1 && n > 5000) continue;  // a million one-element buckets: slow, no new case
        const auto d = desc_or_die("qsgd:n=" + std::to_string(n) + ",levels=" + std::to_string(s) +
                                   ",bucket=" + std::to_string(b));
        const std::uint64_t words = (n * (1 + L) + 31) / 32, buckets = (n + b - 1) / b;
        EXPECT_EQ(ref::payload_bytes(d), 32 + 4 * words + 4 * buckets) << d.to_string();
      }
    }
  }
  // Actual payloads agree (the dispatcher also checks this), e.g. n = 33, s = 1: 66 bits ->
  // 3 words, 1 bucket -> 32 + 12 + 4 = 48 bytes.
  EXPECT_EQ(test::compress_ok(desc_or_die("qsgd:n=33"), test::normal_data(33)).size(), 48u);
}

// Per-element QSGD moments for one bucket: E = v, Var = (N/s)^2 p (1 - p).
void qsgd_moments(const std::vector<float>& v, float N, std::uint32_t s, std::vector<double>* var,
                  std::vector<double>* fourth) {
  var->assign(v.size(), 0);
  fourth->assign(v.size(), 0);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double r = s * std::fabs(double(v[i])) / N, p = r - std::floor(r), a = N / double(s);
    (*var)[i] = a * a * p * (1 - p);
    // 4th central moment of a * Bernoulli(p): a^4 p (1-p) (1 - 3p + 3p^2).
    (*fourth)[i] = a * a * a * a * p * (1 - p) * (1 - 3 * p + 3 * p * p);
  }
}

TEST(Qsgd, UnbiasedWithTheDocumentedVarianceAndBiasedControlFails) {
  const std::size_t n = 48;
  const std::uint32_t s = 3;
  auto v = test::normal_data(n, 8);
  v[5] = 0.0f;  // p = 0 elements must be exact
  const auto d = desc_or_die("qsgd:n=48,levels=3,norm=l2,seed=77");
  double acc = 0;
  for (float x : v) acc += double(x) * x;
  const float N = static_cast<float>(std::sqrt(acc));
  std::vector<double> var, fourth;
  qsgd_moments(v, N, s, &var, &fourth);
  const std::vector<double> mean(v.begin(), v.end());
  const int trials = 20000;
  const double z_max = test::bonferroni_z(
      1e-4, static_cast<double>(2 * n));  // mean and variance tests of every element

  auto oracle = [&](std::uint32_t step) {
    ref::CompressContext ctx;
    ctx.step = step;  // a fresh key each trial
    return test::roundtrip(d, v, ctx);
  };
  const auto m = test::monte_carlo_sums(n, trials, oracle);
  EXPECT_LT(test::max_mean_z(m, mean, var), z_max);
  // Variance: the sample variance has variance ~ (mu4 - var^2) / trials.
  double worst_var_z = 0, mse = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double avg = m.sum[i] / trials;
    const double sv = m.sum_sq[i] / trials - avg * avg;
    mse += m.sum_sq[i] / trials - 2 * avg * v[i] + double(v[i]) * v[i];
    const double sd = std::sqrt((fourth[i] - var[i] * var[i]) / trials);
    if (sd > 0) worst_var_z = std::max(worst_var_z, std::fabs(sv - var[i]) / sd);
  }
  EXPECT_LT(worst_var_z, z_max);
  // QSGD bound E||Q(v) - v||^2 <= min(d/s^2, sqrt(d)/s) ||v||^2 (§4.3), with 5% slack.
  EXPECT_LE(mse, 1.05 * std::min(double(n) / (s * s), std::sqrt(double(n)) / s) * acc);

  // Negative control: rounding up with probability 0.9 p instead of p is biased toward 0
  // and the same test must flag it.
  auto biased = [&](std::uint32_t step) {
    const RngStream rng(d.seed, RngPurpose::kQsgdRounding, step, 0, 0);
    std::vector<float> q(n);
    for (std::size_t j = 0; j < n; ++j) {
      const double r = s * std::fabs(double(v[j])) / N, l = std::floor(r);
      const double level = l + (rng.uniform_float(j) < 0.9 * (r - l));
      q[j] = static_cast<float>(N * (v[j] < 0 ? -level : level) / s);
    }
    return q;
  };
  EXPECT_GT(test::max_mean_z(test::monte_carlo_sums(n, trials, biased), mean, var), z_max);
}

TEST(Qsgd, RoundingUsesThePerRankIndependentStream) {
  const auto d = desc_or_die("qsgd:n=4097,levels=1,seed=3");
  const auto v = test::normal_data(4097, 2);
  ref::CompressContext a, b;
  b.rank = 1;
  const auto pa = test::compress_ok(d, v, a), pb = test::compress_ok(d, v, b);
  EXPECT_NE(pa, pb);  // independent randomness per rank
  ref::CompressContext c = a;
  c.tensor_id = 1;
  EXPECT_NE(pa, test::compress_ok(d, v, c));
  std::vector<float> out;
  ASSERT_TRUE(test::decode(d, pb, &out, a).ok())
      << "decoding needs no rank: the payload is complete";
  EXPECT_EQ(out, qsgd_formula(d, b, v));
}

TEST(Qsgd, CornerCases) {
  // n = 1: N = |v| so r = s: exact and deterministic, for both norms.
  for (const char* norm : {"l2", "max"}) {
    const auto d = desc_or_die(std::string("qsgd:n=1,levels=5,norm=") + norm);
    EXPECT_EQ(test::roundtrip(d, {-0.7f}), std::vector<float>{-0.7f});
  }
  // n = 0: empty body, count 0.
  const auto d0 = desc_or_die("qsgd:n=0");
  EXPECT_EQ(test::compress_ok(d0, {}),
            test::expected_header_at(CompressorKind::kQsgd, 0, 0, 0, 0, 0));
  // All zero: norm 0, level 0, no division; -0.0 is coded with sign 0.
  const auto dz = desc_or_die("qsgd:n=40,bucket=8");
  std::vector<float> z(40, 0.0f);
  z[3] = -0.0f;
  std::vector<std::uint8_t> p;
  const auto out = test::roundtrip(dz, z, {}, &p);
  for (float x : out) {
    EXPECT_EQ(x, 0.0f);
    EXPECT_FALSE(std::signbit(x));
  }
  for (std::size_t i = kHeaderBytes; i < p.size(); ++i) EXPECT_EQ(p[i], 0) << i;
  // One zero bucket next to a non-zero one.
  auto mixed = test::normal_data(16, 1);
  for (int i = 0; i < 8; ++i) mixed[i] = 0.0f;
  const auto dm = desc_or_die("qsgd:n=16,bucket=8,norm=max,levels=2");
  const auto om = test::roundtrip(dm, mixed);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(om[i], 0.0f);
  EXPECT_EQ(om, qsgd_formula(dm, {}, mixed));
}

TEST(Qsgd, NonFinitePolicy) {
  auto v = test::normal_data(20, 3);
  v[4] = std::nanf("");
  const auto d = desc_or_die("qsgd:n=20,bucket=10");
  std::vector<std::uint8_t> p;
  EXPECT_EQ(ref::compress(d, {}, v, p).code(), StatusCode::kNonFinite);
  // propagate: the NaN's bucket decodes to NaN (its norm is NaN), the other bucket is normal.
  const auto dp = desc_or_die("qsgd:n=20,bucket=10,nonfinite=propagate");
  std::vector<std::uint8_t> pn;
  const auto out = test::roundtrip(dp, v, {}, &pn);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(std::isnan(out[i])) << i;
  // The NaN norm is written as the canonical quiet NaN 0x7FC00000 (bytes after 20 2-bit codes).
  EXPECT_EQ(load_u32(pn.data() + kHeaderBytes + 8), 0x7FC00000u);
  for (int i = 10; i < 20; ++i) EXPECT_TRUE(std::isfinite(out[i])) << i;
  // Inf under propagate: the Inf element decodes to +-Inf (level s), its bucket is not finite.
  v[4] = -std::numeric_limits<float>::infinity();
  const auto oi =
      test::roundtrip(desc_or_die("qsgd:n=20,bucket=10,norm=max,nonfinite=propagate"), v);
  EXPECT_TRUE(std::isinf(oi[4]) && oi[4] < 0);
  // A NaN norm is refused when the descriptor says nonfinite=error.
  p = test::compress_ok(dp, v);
  EXPECT_EQ(test::decode(d, p).code(), StatusCode::kCorruptPayload);
}

// Every field of the body is checked.
TEST(Qsgd, CorruptPayloadsAreRejected) {
  // n = 5, s = 2 -> 3-bit codes, 15 bits in one word; bucket 3 -> 2 norms at bytes 4 and 8.
  const auto d = desc_or_die("qsgd:n=5,levels=2,bucket=3,norm=max,seed=1");
  const std::vector<float> v = {1.0f, -2.0f, 0.5f, 0.0f, 3.0f};
  const auto good = test::compress_ok(d, v);
  ASSERT_EQ(good.size(), kHeaderBytes + 12);
  ASSERT_TRUE(test::decode(d, good).ok());
  auto set_code = [&](std::vector<std::uint8_t> p, int i, std::uint32_t code) {
    std::uint32_t w = load_u32(p.data() + kHeaderBytes);
    w = (w & ~(7u << (3 * i))) | (code << (3 * i));
    store_u32(p.data() + kHeaderBytes, w);
    return p;
  };
  // Element 3 is 0.0 in bucket [0, 3.0] with N = 3: level 0, code 0.
  test::expect_corrupt(d, set_code(good, 3, 0b111), "level 3", {}, "level 3 > s = 2");
  test::expect_corrupt(d, set_code(good, 3, 0b001), "sign", {}, "level 0 with sign");
  auto p = good;
  p[kHeaderBytes + 2] |= 0x80;  // bit 23: padding after 15 bits
  test::expect_corrupt(d, p, "padding", {}, "padding");
  for (float bad : {-1.0f, -0.0f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    p = good;
    store_f32(p.data() + kHeaderBytes + 8, bad);
    test::expect_corrupt(d, p, "norm[1]", {}, "bad norm");
  }
  // Under nonfinite=propagate +NaN / +Inf norms decode, but a sign bit (-NaN) never does.
  const auto dp = desc_or_die("qsgd:n=5,levels=2,bucket=3,norm=max,seed=1,nonfinite=propagate");
  p = good;
  store_u32(p.data() + kHeaderBytes + 8, 0x7FC00000u);
  EXPECT_TRUE(test::decode(dp, p).ok());
  store_u32(p.data() + kHeaderBytes + 8, 0xFFC00000u);
  EXPECT_EQ(test::decode(dp, p).code(), StatusCode::kCorruptPayload);
  // A zero norm with a non-zero level.
  p = good;
  store_f32(p.data() + kHeaderBytes + 8, 0.0f);
  test::expect_corrupt(d, p, "norm is 0", {}, "zero norm, level > 0");
  // A wrong count, the dense flag, a body longer than the descriptor's, truncations.
  test::expect_header_corruptions_rejected(d, good, 3);
}

}  // namespace
}  // namespace gradcomp
