// terngrad oracle: known answers (algorithms.md §8 example 5), the formula re-derived here,
// unbiasedness for the clipped gradient (with a biased negative control), scaler sharing,
// payload sizes, corrupted payloads and the corner-case policy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;

// The local scaler / clip bound of one segment, from algorithms.md §4.4.
float scaler_formula(const float* g, std::size_t n, double clip) {
  double mx = 0, sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mx = std::max(mx, std::fabs(double(g[i])));
    sum += g[i];
  }
  if (clip == 0) return static_cast<float>(mx);
  const double mean = sum / double(n);
  double var = 0;
  for (std::size_t i = 0; i < n; ++i) var += (g[i] - mean) * (g[i] - mean);
  const double sigma = std::sqrt(var / double(n));
  return static_cast<float>(sigma == 0 ? mx : clip * sigma);
}

// TernGrad from §4.4: clamp to the local bound b, keep iff u * s < |g|, value s * sgn0(g).
std::vector<float> terngrad_formula(const CompressorDesc& d, const ref::CompressContext& ctx,
                                    const std::vector<float>& v) {
  const RngStream rng(d.seed, RngPurpose::kTernGradRounding, ctx.step, ctx.tensor_id, ctx.rank);
  std::vector<float> out(v.size(), 0.0f);
  const auto segs = tensor_segments(d);
  for (std::size_t t = 0; t < segs.size(); ++t) {
    const float b = scaler_formula(v.data() + segs[t].offset, segs[t].size, d.clip);
    const float s = d.scaler == TernScaler::kShared ? ctx.shared_scalers[t] : b;
    for (std::uint64_t j = segs[t].offset; j < segs[t].offset + segs[t].size; ++j) {
      const float g = std::clamp(v[j], -b, b);
      if (double(rng.uniform_float(j)) * s < std::fabs(double(g))) out[j] = g < 0 ? -s : s;
    }
  }
  return out;
}

// §8 example 5, no clipping: g = [0.2, -0.5, 0.1, 0], s = max|g| = 0.5, keep iff u*s < |g|.
// With u = [0.5, 0.99, 0.3, 0.0]-like draws (u0 >= 0.4, u2 >= 0.2): [0, -0.5, 0, 0]
// (element 1 has |g| = s: always kept; element 3 is 0: never).
// Codes (0 = -1, 1 = 0, 2 = +1), 2 bits LSB first: [1, 0, 1, 1] -> 0b01_01_00_01 = 0x51.
// Body: 51 00 00 00 | 0.5f = 0x3F000000 -> 00 00 00 3F; count 1 segment, 8 bytes.
// Draws with u0 < 0.4 and u2 < 0.2 keep both: [0.5, -0.5, 0.5, 0], codes [2, 0, 2, 1]
// -> 0b01_10_00_10 = 0x62.
TEST(TernGrad, KnownAnswerExample5) {
  const std::vector<float> g = {0.2f, -0.5f, 0.1f, 0.0f};
  ref::CompressContext ctx;
  ctx.step = 12;
  const std::uint64_t seed =
      test::find_seed(RngPurpose::kTernGradRounding, 12, 0, 0, [](const RngStream& s) {
        return s.uniform_float(0) >= 0.45f && s.uniform_float(2) >= 0.25f;
      });
  const auto d = desc_or_die("terngrad:n=4,clip=0,seed=" + std::to_string(seed));
  std::vector<std::uint8_t> p;
  auto out = test::roundtrip(d, g, ctx, &p);
  auto expected = test::expected_header_at(CompressorKind::kTernGrad, 4, 12, 0, 1, 8);
  test::append_bytes(expected, {0x51, 0, 0, 0, 0, 0, 0, 0x3F});
  EXPECT_EQ(p, expected);
  EXPECT_EQ(out, (std::vector<float>{0.0f, -0.5f, 0.0f, 0.0f}));

  const std::uint64_t seed2 = test::find_seed(
      RngPurpose::kTernGradRounding, 12, 0, 0,
      [](const RngStream& s) { return s.uniform_float(0) < 0.35f && s.uniform_float(2) < 0.15f; });
  const auto d2 = desc_or_die("terngrad:n=4,clip=0,seed=" + std::to_string(seed2));
  out = test::roundtrip(d2, g, ctx, &p);
  expected[kHeaderBytes] = 0x62;
  EXPECT_EQ(p, expected);
  EXPECT_EQ(out, (std::vector<float>{0.5f, -0.5f, 0.5f, 0.0f}));
}

// §8 example 5, clipping c = 2.5, g = [1, 0 x 9]: mean 0.1, sigma = sqrt((0.81 + 9*0.01)/10)
// = 0.3, bound 0.75 -> g clipped to [0.75, 0, ...], s = 0.75: element 0 has |g| = s and is
// always kept -> [0.75, 0 x 9] for any seed. Codes [2, 1 x 9]: bit 1, then bits 2, 4, ..., 18
// -> bytes 0x56 0x55 0x05 0x00. 0.75f = 0x3F400000.
TEST(TernGrad, KnownAnswerClipping) {
  std::vector<float> g(10, 0.0f);
  g[0] = 1.0f;
  for (int seed : {0, 1, 2}) {
    const auto d = desc_or_die("terngrad:n=10,clip=2.5,seed=" + std::to_string(seed));
    std::vector<std::uint8_t> p;
    const auto out = test::roundtrip(d, g, {}, &p);
    auto expected = test::expected_header_at(CompressorKind::kTernGrad, 10, 0, 0, 1, 8);
    test::append_bytes(expected, {0x56, 0x55, 0x05, 0x00, 0, 0, 0x40, 0x3F});
    EXPECT_EQ(p, expected);
    std::vector<float> want(10, 0.0f);
    want[0] = 0.75f;
    EXPECT_EQ(out, want);
    std::vector<float> scalers;
    ASSERT_TRUE(ref::terngrad_local_scalers(d, g, scalers).ok());
    EXPECT_EQ(scalers, std::vector<float>{0.75f});
  }
}

TEST(TernGrad, MatchesTheFormulaAtEdgeSizes) {
  for (const char* opts : {"clip=2.5", "clip=0", "clip=1"}) {
    for (std::uint64_t n : test::edge_sizes()) {
      const auto d = desc_or_die("terngrad:seed=4,n=" + std::to_string(n) + "," + opts);
      const auto ctx = test::context_at(2, 5, 1);
      test::expect_matches_formula(d, ctx, 31,
                                   [&](const auto& v) { return terngrad_formula(d, ctx, v); });
    }
  }
}

TEST(TernGrad, OneScalerPerTensorSegment) {
  const auto d = desc_or_die("terngrad:shapes=4x4/3/20,seed=2");
  auto v = test::normal_data(d.n, 5);
  v[25] = 40.0f;  // an outlier in segment 2 (elements 19..38) gets clipped
  std::vector<std::uint8_t> p;
  const auto out = test::roundtrip(d, v, {}, &p);
  EXPECT_EQ(load_u32(p.data() + 24), 3u);
  EXPECT_EQ(out, terngrad_formula(d, {}, v));
  std::vector<float> scalers;
  ASSERT_TRUE(ref::terngrad_local_scalers(d, v, scalers).ok());
  ASSERT_EQ(scalers.size(), 3u);
  const std::uint64_t scalers_at = kHeaderBytes + 4 * ((2 * d.n + 31) / 32);
  for (int t = 0; t < 3; ++t) EXPECT_EQ(load_f32(p.data() + scalers_at + 4 * t), scalers[t]);
  // Segment 2 = elements 19..38: its bound is 2.5 sigma of those 20 values only, and the
  // outlier decodes to at most that bound.
  EXPECT_EQ(scalers[2], scaler_formula(v.data() + 19, 20, 2.5));
  EXPECT_EQ(scalers[1], scaler_formula(v.data() + 16, 3, 2.5));
  EXPECT_LT(scalers[2], 40.0f);
  EXPECT_TRUE(out[25] == 0 || out[25] == scalers[2]);
}

// Largest |mean - E| / sqrt(Var / trials) over the elements of s * sgn(g) * Bernoulli(|g| / s):
// E = g, Var = |g| (s - |g|); zero-variance elements must match (see max_mean_z).
double max_z(const std::vector<float>& g_clipped, float s, int trials,
             const std::function<std::vector<float>(std::uint32_t)>& draw) {
  const std::vector<double> mean(g_clipped.begin(), g_clipped.end());
  std::vector<double> var(mean.size());
  for (std::size_t i = 0; i < mean.size(); ++i) {
    const double a = std::fabs(mean[i]);
    var[i] = a * (s - a);
  }
  return test::max_mean_z(test::monte_carlo_sums(g_clipped.size(), trials, draw), mean, var);
}

TEST(TernGrad, UnbiasedForTheClippedGradientAndBiasedControlFails) {
  const std::size_t n = 40;
  auto g = test::normal_data(n, 12);
  g[3] = 9.0f;  // clipped to 2.5 sigma
  g[7] = -7.5f;
  g[9] = 0.0f;
  const auto d = desc_or_die("terngrad:n=40,clip=2.5,seed=99");
  std::vector<float> scalers;
  ASSERT_TRUE(ref::terngrad_local_scalers(d, g, scalers).ok());
  const float s = scalers[0];
  EXPECT_EQ(s, scaler_formula(g.data(), n, 2.5));
  std::vector<float> gc(n);
  for (std::size_t i = 0; i < n; ++i) gc[i] = std::clamp(g[i], -s, s);
  ASSERT_EQ(gc[3], s);  // the outliers really are clipped
  ASSERT_EQ(gc[7], -s);
  const int trials = 20000;
  const double z = test::bonferroni_z(1e-4, static_cast<double>(n));
  auto oracle = [&](std::uint32_t step) {
    ref::CompressContext ctx;
    ctx.step = step;
    return test::roundtrip(d, g, ctx);
  };
  EXPECT_LT(max_z(gc, s, trials, oracle), z);
  // Negative control: keeping with probability 0.9 |g|/s is biased toward 0.
  auto biased = [&](std::uint32_t step) {
    const RngStream rng(d.seed, RngPurpose::kTernGradRounding, step, 0, 0);
    std::vector<float> q(n, 0.0f);
    for (std::size_t j = 0; j < n; ++j) {
      if (double(rng.uniform_float(j)) * s < 0.9 * std::fabs(double(gc[j])))
        q[j] = gc[j] < 0 ? -s : s;
    }
    return q;
  };
  EXPECT_GT(max_z(gc, s, trials, biased), z);
}

TEST(TernGrad, SharedScalers) {
  const auto d = desc_or_die("terngrad:shapes=10/23,scaler=shared,clip=2.5,seed=3");
  const auto dl = desc_or_die("terngrad:shapes=10/23,scaler=local,clip=2.5,seed=3");
  // Two workers: the shared scaler of each segment is the max of their local scalers.
  const auto g0 = test::normal_data(33, 1);
  const auto g1 = [] {
    auto g = test::normal_data(33, 2);
    for (float& x : g) x *= 3;
    return g;
  }();
  std::vector<float> s0, s1;
  ASSERT_TRUE(ref::terngrad_local_scalers(d, g0, s0).ok());
  ASSERT_TRUE(ref::terngrad_local_scalers(d, g1, s1).ok());
  ASSERT_EQ(s0.size(), 2u);
  const std::vector<float> shared = {std::max(s0[0], s1[0]), std::max(s0[1], s1[1])};
  ref::CompressContext ctx;
  ctx.shared_scalers = Span<const float>(shared);
  for (const auto* g : {&g0, &g1}) {
    std::vector<std::uint8_t> p;
    const auto out = test::roundtrip(d, *g, ctx, &p);
    EXPECT_EQ(out, terngrad_formula(d, ctx, *g));
    EXPECT_EQ(load_f32(p.data() + p.size() - 8), shared[0]);
    EXPECT_EQ(load_f32(p.data() + p.size() - 4), shared[1]);
    for (float x : out)
      EXPECT_TRUE(x == 0 || x == shared[0] || x == -shared[0] || x == shared[1] || x == -shared[1]);
    // Decoding does not need the context's scalers: they are in the payload.
    std::vector<float> again;
    ASSERT_TRUE(test::decode(d, p, &again).ok());
    EXPECT_EQ(again, out);
  }
  // With shared = the worker's own local scalers the payload is byte-identical to
  // scaler=local's (the options are not part of the header).
  ref::CompressContext own;
  own.shared_scalers = Span<const float>(s0);
  std::vector<std::uint8_t> a, b;
  ASSERT_TRUE(ref::compress(d, own, g0, a).ok());
  ASSERT_TRUE(ref::compress(dl, {}, g0, b).ok());
  EXPECT_EQ(a, b);
  // Bad shared scalers: wrong count, non-finite, below the local scaler.
  auto bad = [&](std::vector<float> sc, const char* msg) {
    ref::CompressContext c;
    c.shared_scalers = Span<const float>(sc);
    std::vector<std::uint8_t> p = {7};
    Status s = ref::compress(d, c, g1, p);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << msg;
    EXPECT_NE(s.message().find(msg), std::string::npos) << s.message();
    EXPECT_EQ(p, std::vector<std::uint8_t>{7});
  };
  bad({shared[0]}, "one shared scaler per tensor segment");
  bad({}, "one shared scaler per tensor segment");
  bad({shared[0], std::numeric_limits<float>::infinity()}, "not finite");
  bad({shared[0], std::nanf("")}, "not finite");
  bad({shared[0], s1[1] * 0.99f}, "below");
}

TEST(TernGrad, LocalScalersApi) {
  std::vector<float> sc = {5.0f};
  const auto v = test::normal_data(10, 1);
  EXPECT_EQ(ref::terngrad_local_scalers(desc_or_die("qsgd:n=10"), v, sc).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ref::terngrad_local_scalers(desc_or_die("terngrad:n=11"), v, sc).code(),
            StatusCode::kInvalidArgument);
  auto bad = v;
  bad[2] = std::nanf("");
  EXPECT_EQ(ref::terngrad_local_scalers(desc_or_die("terngrad:n=10"), bad, sc).code(),
            StatusCode::kNonFinite);
  EXPECT_EQ(sc, std::vector<float>{5.0f}) << "untouched on error";
  ASSERT_TRUE(ref::terngrad_local_scalers(desc_or_die("terngrad:n=0"), {}, sc).ok());
  EXPECT_TRUE(sc.empty());
}

// payload = 32 + 4 ceil(2n / 32) + 4 * segments.
TEST(TernGrad, PayloadSizeFormula) {
  for (std::uint64_t n : {0ull, 1ull, 15ull, 16ull, 17ull, 1000ull, 4097ull, 1048579ull}) {
    const auto d = desc_or_die("terngrad:n=" + std::to_string(n));
    EXPECT_EQ(ref::payload_bytes(d), 32 + 4 * ((2 * n + 31) / 32) + (n > 0 ? 4 : 0)) << n;
  }
  EXPECT_EQ(ref::payload_bytes(desc_or_die("terngrad:shapes=3/4x4/100")), 32u + 4 * 8 + 4 * 3);
}

TEST(TernGrad, CornerCases) {
  EXPECT_EQ(test::roundtrip(desc_or_die("terngrad:n=0"), {}), std::vector<float>{});
  // n = 1: sigma = 0 -> scaler |g| [P] -> always kept: exact, with and without clipping.
  for (const char* clip : {"2.5", "0"}) {
    EXPECT_EQ(test::roundtrip(desc_or_die(std::string("terngrad:n=1,clip=") + clip), {-0.4f}),
              std::vector<float>{-0.4f});
  }
  // A constant segment under clipping: sigma = 0 -> s = |a|, everything kept (the official
  // rule would send zeros).
  EXPECT_EQ(test::roundtrip(desc_or_die("terngrad:n=33,clip=2.5"), std::vector<float>(33, 0.3f)),
            std::vector<float>(33, 0.3f));
  // All zero: scaler 0, codes "0", output +0, no division.
  std::vector<std::uint8_t> p;
  const auto out =
      test::roundtrip(desc_or_die("terngrad:n=20"), std::vector<float>(20, -0.0f), {}, &p);
  for (float x : out) EXPECT_TRUE(x == 0 && !std::signbit(x));
  EXPECT_EQ(load_f32(p.data() + p.size() - 4), 0.0f);
}

TEST(TernGrad, NonFinitePolicy) {
  auto v = test::normal_data(30, 7);
  v[11] = -std::numeric_limits<float>::infinity();
  std::vector<std::uint8_t> p;
  EXPECT_EQ(ref::compress(desc_or_die("terngrad:shapes=10/20"), {}, v, p).code(),
            StatusCode::kNonFinite);
  for (const char* clip : {"0", "2.5"}) {
    const auto dp =
        desc_or_die(std::string("terngrad:shapes=10/20,nonfinite=propagate,clip=") + clip);
    const auto out = test::roundtrip(dp, v, {}, &p);
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(std::isfinite(out[i])) << i;
    for (int i = 10; i < 30; ++i) EXPECT_FALSE(std::isfinite(out[i])) << clip << " " << i;
    EXPECT_EQ(test::decode(desc_or_die("terngrad:shapes=10/20"), p).code(),
              StatusCode::kCorruptPayload);
  }
  v[11] = -std::nanf("");
  const auto on =
      test::roundtrip(desc_or_die("terngrad:shapes=10/20,nonfinite=propagate"), v, {}, &p);
  for (int i = 10; i < 30; ++i) EXPECT_TRUE(std::isnan(on[i])) << i;
  EXPECT_EQ(load_u32(p.data() + p.size() - 4), 0x7FC00000u);  // canonical NaN scaler
}

TEST(TernGrad, CorruptPayloadsAreRejected) {
  // n = 20: 40 code bits in 2 words (24 padding bits), shapes 12/8 -> scalers at bytes 8, 12.
  const auto d = desc_or_die("terngrad:shapes=12/8,seed=1");
  auto v = test::normal_data(20, 3);
  v[0] = 0.0f;  // element 0 always has code 1 ("0")
  std::vector<std::uint8_t> good;
  ASSERT_TRUE(ref::compress(d, {}, v, good).ok());
  ASSERT_EQ(good.size(), kHeaderBytes + 16);
  ASSERT_TRUE(test::decode(d, good).ok());
  auto p = good;
  p[kHeaderBytes] |= 0x3;  // element 0: code 3
  test::expect_corrupt(d, p, "code[0] = 3", {}, "code 3");
  p = good;
  p[kHeaderBytes + 5] |= 0x01;  // bit 40: first padding bit
  test::expect_corrupt(d, p, "padding", {}, "padding");
  for (float bad : {-1.0f, -0.0f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    p = good;
    store_f32(p.data() + kHeaderBytes + 12, bad);
    test::expect_corrupt(d, p, "scaler[1]", {}, "bad scaler");
  }
  p = good;
  p[kHeaderBytes] = static_cast<std::uint8_t>((p[kHeaderBytes] & ~0x3) | 0x2);  // code +1
  store_f32(p.data() + kHeaderBytes + 8, 0.0f);
  test::expect_corrupt(d, p, "scaler is 0", {}, "non-zero code with scaler 0");
  // A wrong count, the dense flag, a body longer than the descriptor's, truncations.
  test::expect_header_corruptions_rejected(d, good, 1);
}

}  // namespace
}  // namespace gradcomp
