// qsgd_topk / qsgd_randk oracles (Qsparse Q_s o Top_k, Q_s o Rand_k, algorithms.md §4.10):
// known answers, the composition re-derived here, unbiasedness on the support (with a biased
// negative control), the scaled operator's contraction, shared vs private supports, payload
// sizes, k = 0 / k >= n, corrupted payloads and the NaN policy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <set>
#include <string>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;

// Floyd's sampling keyed as documented (draw j uses element j), written out here.
std::vector<std::uint32_t> floyd(const RngStream& rng, std::uint64_t n, std::uint64_t k) {
  std::set<std::uint32_t> s;
  for (std::uint64_t j = n - k; j < n; ++j) {
    const auto t = static_cast<std::uint32_t>(rng.uniform_below(j + 1, j));
    if (!s.insert(t).second) s.insert(static_cast<std::uint32_t>(j));
  }
  return {s.begin(), s.end()};
}

std::vector<std::uint32_t> support_formula(const CompressorDesc& d, const ref::CompressContext& ctx,
                                           const std::vector<float>& v, std::uint64_t k) {
  if (d.kind == CompressorKind::kQsgdRandK) {
    const std::uint32_t rank = d.indices == IndexMode::kShared ? kSharedRank : ctx.rank;
    return floyd(RngStream(d.seed, RngPurpose::kRandKIndices, ctx.step, ctx.tensor_id, rank), d.n,
                 k);
  }
  std::vector<std::uint32_t> order(v.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return std::fabs(v[a]) > std::fabs(v[b]);  // stable: ties keep the lower index first
  });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

// Q_s o Comp_k (times 1/(1+beta) when scaled) from §4.10 / §4.3.
std::vector<float> qsparse_formula(const CompressorDesc& d, const ref::CompressContext& ctx,
                                   const std::vector<float>& v) {
  const std::uint64_t k = sparsifier_k(d, d.n);
  if (d.n > 0 && k >= d.n) return v;  // dense
  std::vector<float> out(v.size(), 0.0f);
  if (k == 0) return out;
  const auto S = support_formula(d, ctx, v, k);
  double acc = 0;
  for (auto j : S) {
    const double a = std::fabs(double(v[j]));
    acc = d.norm == QsgdNorm::kL2 ? acc + a * a : std::max(acc, a);
  }
  const float N = static_cast<float>(d.norm == QsgdNorm::kL2 ? std::sqrt(acc) : acc);
  if (N == 0) return out;
  const double s = d.levels;
  const double beta = std::min(double(k) / (s * s), std::sqrt(double(k)) / s);
  const double factor = d.scaled ? 1.0 / (1.0 + beta) : 1.0;
  const RngStream rng(d.seed, RngPurpose::kQsgdRounding, ctx.step, ctx.tensor_id, ctx.rank);
  for (auto j : S) {
    const double r = s * std::fabs(double(v[j])) / N, l = std::floor(r);
    const double level = std::min(s, l + (rng.uniform_float(j) < r - l));
    out[j] = static_cast<float>(N * (v[j] < 0 ? -level : level) / s * factor);
  }
  return out;
}

// v = [0.5, -3, 0, 4, 1], k = 2: Top_2 = {1, 3} (|-3|, |4|). norm=max: N = 4, s = 4:
// r = [4*3/4, 4*4/4] = [3, 4] -> levels [3, 4], no randomness. L = ceil(log2 5) = 3, codes of
// 4 bits = sign | level << 1: [1 | 6 = 7, 8] -> byte 0x87.
// Body: indices 01 00 00 00 03 00 00 00 | codes 87 00 00 00 | N = 4.0f = 0x40800000.
// Decoded [0, -3, 0, 4, 0]; scaled=1: beta = min(2/16, sqrt(2)/4) = 0.125, factor 8/9:
// [0, -8/3, 0, 32/9, 0]. Same payload (the scaling is applied by the decoder).
TEST(QsgdTopK, KnownAnswer) {
  const std::vector<float> v = {0.5f, -3.0f, 0.0f, 4.0f, 1.0f};
  auto expected = test::expected_header(CompressorKind::kQsgdTopK, 5, 2, 16);
  test::append_bytes(expected, {1, 0, 0, 0, 3, 0, 0, 0, 0x87, 0, 0, 0, 0, 0, 0x80, 0x40});
  std::vector<std::uint8_t> p;
  auto out = test::roundtrip(desc_or_die("qsgd_topk:n=5,k=2,levels=4,norm=max"), v, {}, &p);
  EXPECT_EQ(p, expected);
  EXPECT_EQ(out, (std::vector<float>{0.0f, -3.0f, 0.0f, 4.0f, 0.0f}));
  out = test::roundtrip(desc_or_die("qsgd_topk:n=5,k=2,levels=4,norm=max,scaled=1"), v, {}, &p);
  EXPECT_EQ(p, expected);
  EXPECT_EQ(out, (std::vector<float>{0.0f, static_cast<float>(-8.0 / 3), 0.0f,
                                     static_cast<float>(32.0 / 9), 0.0f}));
}

// §8 example 6 (ties): v = [3, -3, 1, 2], k = 1 -> index 0 (lower index wins). One value:
// N = 3 under either norm, r = s -> level s = 1: code 0 | 1 << 1 = 0b10.
// Body: 00 00 00 00 | 02 00 00 00 | 3.0f = 0x40400000. Decoded [3, 0, 0, 0].
TEST(QsgdTopK, KnownAnswerTies) {
  for (const char* norm : {"l2", "max"}) {
    const auto d = desc_or_die(std::string("qsgd_topk:n=4,k=1,levels=1,norm=") + norm);
    std::vector<std::uint8_t> p;
    const auto out = test::roundtrip(d, {3.0f, -3.0f, 1.0f, 2.0f}, {}, &p);
    auto expected = test::expected_header(CompressorKind::kQsgdTopK, 4, 1, 12);
    test::append_bytes(expected, {0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0x40, 0x40});
    EXPECT_EQ(p, expected);
    EXPECT_EQ(out, (std::vector<float>{3.0f, 0.0f, 0.0f, 0.0f}));
  }
}

// v = [2, -2, 2, -2, 2, -2], k = 3, s = 1, norm=max: N = 2 and every r = 1 -> level 1, so
// only the support is random. Codes (2 bits): even j -> 0b10, odd j -> 0b11.
// indices=shared: body = codes (1 word) + N = 2.0f (0x40000000); no indices.
// indices=private (rank 1): body = 3 u32 indices, codes, N.
TEST(QsgdRandK, KnownAnswerSharedAndPrivate) {
  const std::vector<float> v = {2.0f, -2.0f, 2.0f, -2.0f, 2.0f, -2.0f};
  for (const char* mode : {"shared", "private"}) {
    const bool shared = std::string(mode) == "shared";
    const auto d =
        desc_or_die(std::string("qsgd_randk:n=6,k=3,levels=1,norm=max,seed=5,indices=") + mode);
    ref::CompressContext ctx;
    ctx.rank = 1;
    const auto S =
        floyd(RngStream(5, RngPurpose::kRandKIndices, 0, 0, shared ? kSharedRank : 1), 6, 3);
    ASSERT_EQ(S.size(), 3u);
    auto expected = test::expected_header(CompressorKind::kQsgdRandK, 6, 3, shared ? 8 : 20);
    if (!shared) {
      for (auto j : S) test::append_bytes(expected, {static_cast<std::uint8_t>(j), 0, 0, 0});
    }
    std::uint8_t codes = 0;
    for (int i = 0; i < 3; ++i) {
      codes = static_cast<std::uint8_t>(codes | ((S[i] % 2 ? 3 : 2) << (2 * i)));
    }
    test::append_bytes(expected, {codes, 0, 0, 0, 0, 0, 0, 0x40});
    std::vector<std::uint8_t> p;
    const auto out = test::roundtrip(d, v, ctx, &p);
    EXPECT_EQ(p, expected) << mode;
    std::vector<float> want(6, 0.0f);
    for (auto j : S) want[j] = v[j];
    EXPECT_EQ(out, want) << mode;
  }
}

TEST(QsgdTopK, MatchesTheFormulaAtEdgeSizes) {
  const char* variants[] = {"qsgd_topk:density=0.01,levels=1",
                            "qsgd_topk:density=0.3,levels=3,norm=max,scaled=1",
                            "qsgd_randk:density=0.01,levels=2,indices=shared",
                            "qsgd_randk:density=0.2,levels=7,indices=private,scaled=1",
                            "qsgd_randk:k=5,levels=1,norm=max,indices=private"};
  for (const char* base : variants) {
    for (std::uint64_t n : test::edge_sizes()) {
      const auto d = desc_or_die(std::string(base) + ",seed=8,n=" + std::to_string(n));
      if (n > 5000 && d.density > 0.05) continue;
      const auto ctx = test::context_at(4, 6, 2);
      test::expect_matches_formula(d, ctx, 13,
                                   [&](const auto& v) { return qsparse_formula(d, ctx, v); });
    }
  }
}

// Sizes: k = 0 -> 32; k >= n -> 32 + 4n (dense); else 32 + 4k (indices, not for
// qsgd_randk indices=shared) + 4 ceil(k (1 + L) / 32) + 4.
TEST(QsgdRandK, PayloadSizeFormula) {
  for (const char* kind : {"qsgd_topk", "qsgd_randk"}) {
    for (const char* idx : {"shared", "private"}) {
      if (std::string(kind) == "qsgd_topk" && std::string(idx) == "private") continue;
      const bool send_idx = std::string(kind) == "qsgd_topk" || std::string(idx) == "private";
      for (std::uint32_t s : {1u, 2u, 7u, 255u}) {
        const std::uint64_t L = qsgd_level_bits(s);
        for (std::uint64_t n : {0ull, 1ull, 2ull, 33ull, 1000ull, 1048579ull}) {
          for (std::int64_t k : {0ll, 1ll, 5ll, 31ll, 32ll, 33ll, 999ll, 1000ll, 2000ll}) {
            std::string text = std::string(kind) + ":n=" + std::to_string(n) +
                               ",k=" + std::to_string(k) + ",levels=" + std::to_string(s);
            if (std::string(kind) == "qsgd_randk") text += std::string(",indices=") + idx;
            const std::uint64_t kk = std::min<std::uint64_t>(std::uint64_t(k), n);
            std::uint64_t want = 32;
            if (n > 0 && kk >= n) {
              want += 4 * n;
            } else if (kk > 0) {
              want += (send_idx ? 4 * kk : 0) + 4 * ((kk * (1 + L) + 31) / 32) + 4;
            }
            EXPECT_EQ(ref::payload_bytes(desc_or_die(text)), want) << text;
          }
        }
      }
    }
  }
}

TEST(QsgdTopK, KZeroSendsNothingAndKAtLeastNSendsDense) {
  const auto v = test::normal_data(33, 2);
  for (const char* kind : {"qsgd_topk", "qsgd_randk"}) {
    for (const char* kopt : {"k=0", "density=0"}) {
      const auto d = desc_or_die(std::string(kind) + ":n=33," + kopt);
      std::vector<std::uint8_t> p;
      EXPECT_EQ(test::roundtrip(d, v, {}, &p), std::vector<float>(33, 0.0f));
      EXPECT_EQ(p, test::expected_header(d.kind, 33, 0, 0));
    }
    for (const char* kopt : {"k=33", "k=100", "density=1"}) {
      const auto d = desc_or_die(std::string(kind) + ":n=33,scaled=1," + kopt);
      std::vector<std::uint8_t> p;
      EXPECT_EQ(test::roundtrip(d, v, {}, &p), v);  // exact: not quantized, not scaled
      EXPECT_EQ(p[7], kFlagDense);
      EXPECT_EQ(load_u32(p.data() + 24), 33u);
      EXPECT_EQ(p.size(), 32u + 4 * 33);
    }
    // n = 1 with the default density: k = 1 = n -> dense, exact.
    EXPECT_EQ(test::roundtrip(desc_or_die(std::string(kind) + ":n=1"), {-0.125f}),
              std::vector<float>{-0.125f});
    EXPECT_TRUE(test::roundtrip(desc_or_die(std::string(kind) + ":n=0"), {}).empty());
    // All-zero input: N = 0, levels 0, output 0.
    EXPECT_EQ(test::roundtrip(desc_or_die(std::string(kind) + ":n=100,k=10"),
                              std::vector<float>(100, 0.0f)),
              std::vector<float>(100, 0.0f));
  }
}

TEST(QsgdRandK, SharedSupportAgreesAcrossRanksPrivateDoesNot) {
  const auto v = test::normal_data(1000, 3);
  auto support_of = [&](const char* idx, std::uint32_t rank) {
    const auto d = desc_or_die(std::string("qsgd_randk:n=1000,k=50,levels=1,norm=max,seed=2,"
                                           "indices=") +
                               idx);
    ref::CompressContext ctx;
    ctx.rank = rank;
    ctx.step = 9;
    // Inputs with no zero level anywhere (norm=max, s=1, |v| = N) expose the support.
    const std::vector<float> ones(1000, 1.0f);
    const auto out = test::roundtrip(d, ones, ctx);
    std::vector<std::uint32_t> s;
    for (std::uint32_t j = 0; j < 1000; ++j)
      if (out[j] != 0) s.push_back(j);
    return s;
  };
  const auto s0 = support_of("shared", 0), s1 = support_of("shared", 1);
  EXPECT_EQ(s0.size(), 50u);
  EXPECT_EQ(s0, s1);
  const auto p0 = support_of("private", 0), p1 = support_of("private", 1);
  EXPECT_EQ(p0.size(), 50u);
  EXPECT_NE(p0, p1);
  EXPECT_NE(p0, s0);
  // The shared payload decodes on another rank (it regenerates the same indices).
  const auto d = desc_or_die("qsgd_randk:n=1000,k=50,seed=2,indices=shared");
  ref::CompressContext c0, c1;
  c1.rank = 1;
  std::vector<std::uint8_t> p;
  ASSERT_TRUE(ref::compress(d, c0, v, p).ok());
  std::vector<float> out;
  ASSERT_TRUE(test::decode(d, p, &out, c1).ok());
  EXPECT_EQ(out, qsparse_formula(d, c0, v));
}

// On the (deterministic) top-k support, unscaled Q_s is unbiased with per-element variance
// (N/s)^2 p (1 - p); off the support the output is 0. Scaled: mean v / (1 + beta).
TEST(QsgdTopK, UnbiasedOnTheSupportAndBiasedControlFails) {
  const std::size_t n = 60, k = 20;
  const std::uint32_t s = 2;
  const auto v = test::normal_data(n, 40);
  const auto S = support_formula(desc_or_die("qsgd_topk:n=60,k=20"), {}, v, k);
  double acc = 0;
  for (auto j : S) acc += double(v[j]) * v[j];
  const float N = static_cast<float>(std::sqrt(acc));
  const double beta = std::min(double(k) / (s * s), std::sqrt(double(k)) / s);
  const int trials = 20000;
  const double z_max = test::bonferroni_z(1e-4, static_cast<double>(k));

  auto max_z = [&](double factor, const std::function<std::vector<float>(std::uint32_t)>& draw) {
    const std::vector<double> sum = test::monte_carlo_sums(n, trials, draw).sum;
    double worst = 0;
    std::vector<bool> in_s(n, false);
    for (auto j : S) in_s[j] = true;
    for (std::size_t i = 0; i < n; ++i) {
      if (!in_s[i]) {
        if (sum[i] != 0) worst = std::numeric_limits<double>::infinity();
        continue;
      }
      const double r = s * std::fabs(double(v[i])) / N, p = r - std::floor(r);
      const double sd = factor * N / s * std::sqrt(p * (1 - p) / trials);
      worst = std::max(worst, std::fabs(sum[i] / trials - factor * v[i]) / sd);
    }
    return worst;
  };
  for (int scaled = 0; scaled <= 1; ++scaled) {
    const auto d =
        desc_or_die("qsgd_topk:n=60,k=20,levels=2,seed=6,scaled=" + std::to_string(scaled));
    const double factor = scaled ? 1.0 / (1.0 + beta) : 1.0;
    EXPECT_LT(max_z(factor,
                    [&](std::uint32_t step) {
                      ref::CompressContext ctx;
                      ctx.step = step;
                      return test::roundtrip(d, v, ctx);
                    }),
              z_max)
        << d.to_string();
  }
  // Negative control: rounding up with probability 0.9 p.
  EXPECT_GT(max_z(1.0,
                  [&](std::uint32_t step) {
                    const RngStream rng(6, RngPurpose::kQsgdRounding, step, 0, 0);
                    std::vector<float> q(n, 0.0f);
                    for (auto j : S) {
                      const double r = s * std::fabs(double(v[j])) / N, l = std::floor(r);
                      const double level = l + (rng.uniform_float(j) < 0.9 * (r - l));
                      q[j] = static_cast<float>(N * (v[j] < 0 ? -level : level) / s);
                    }
                    return q;
                  }),
            z_max);
}

// The scaled composition is a compression operator: E||x - C(x)||^2 <= (1 - gamma) ||x||^2,
// gamma = k / (d (1 + beta)) (§4.10 [R]), for both supports and both norms.
TEST(QsgdRandK, ScaledCompositionContracts) {
  const std::uint64_t n = 300, k = 30;
  const auto x = test::normal_data(n, 77);
  const double xx = test::sum_sq(x);
  for (const char* kind : {"qsgd_topk", "qsgd_randk"}) {
    for (const char* norm : {"l2", "max"}) {
      for (std::uint32_t s : {1u, 4u}) {
        const auto d = desc_or_die(std::string(kind) + ":n=300,k=30,scaled=1,seed=3,norm=" + norm +
                                   ",levels=" + std::to_string(s));
        const double beta = std::min(double(k) / (s * s), std::sqrt(double(k)) / s);
        const double gamma = double(k) / (double(n) * (1 + beta));
        double mse = 0;
        const int trials = 2000;
        for (int t = 0; t < trials; ++t) {
          ref::CompressContext ctx;
          ctx.step = static_cast<std::uint32_t>(t);
          const auto q = test::roundtrip(d, x, ctx);
          for (std::uint64_t i = 0; i < n; ++i)
            mse += (double(x[i]) - q[i]) * (double(x[i]) - q[i]);
        }
        mse /= trials;
        EXPECT_LE(mse, (1 - gamma) * xx * 1.01) << d.to_string();
        EXPECT_GT(mse, 0.0);
      }
    }
  }
}

TEST(QsgdTopK, NonFinitePolicy) {
  auto v = test::normal_data(50, 9);
  v[20] = std::nanf("");
  std::vector<std::uint8_t> p;
  EXPECT_EQ(ref::compress(desc_or_die("qsgd_topk:n=50,k=5"), {}, v, p).code(),
            StatusCode::kNonFinite);
  // propagate: NaN is selected first (topk order) and its norm makes the support NaN.
  const auto out = test::roundtrip(desc_or_die("qsgd_topk:n=50,k=5,nonfinite=propagate"), v);
  EXPECT_TRUE(std::isnan(out[20]));
  int nan_count = 0;
  for (float x : out) nan_count += std::isnan(x);
  EXPECT_EQ(nan_count, 5);
}

TEST(QsgdTopK, CorruptPayloadsAreRejected) {
  // n = 40, k = 4, s = 2 -> body: 4 indices (16 bytes), 12 code bits in 1 word, 1 norm.
  const auto d = desc_or_die("qsgd_topk:n=40,k=4,levels=2,norm=max,seed=1");
  auto v = test::normal_data(40, 1);
  v[10] = 50.0f;  // the arg-max: N = 50, level s = 2 (so some level is non-zero)
  std::vector<std::uint8_t> good;
  ASSERT_TRUE(ref::compress(d, {}, v, good).ok());
  ASSERT_EQ(good.size(), kHeaderBytes + 24);
  ASSERT_TRUE(test::decode(d, good).ok());
  const std::size_t idx = kHeaderBytes, codes = kHeaderBytes + 16, norm = kHeaderBytes + 20;
  auto p = good;
  store_u32(p.data() + idx + 4, load_u32(p.data() + idx));  // duplicate index
  test::expect_corrupt(d, p, "strictly increasing", {}, "duplicate index");
  p = good;
  store_u32(p.data() + idx + 12, 40);
  test::expect_corrupt(d, p, "out of range", {}, "index out of range");
  // Level 3 > s = 2 and level 0 with a sign bit, in code 0 (bits 0..2).
  p = good;
  p[codes] = static_cast<std::uint8_t>((p[codes] & ~0x7) | 0x7);
  test::expect_corrupt(d, p, "level 3", {}, "level 3");
  p = good;
  p[codes] = static_cast<std::uint8_t>((p[codes] & ~0x7) | 0x1);
  test::expect_corrupt(d, p, "sign", {}, "zero level with sign");
  p = good;
  p[codes + 1] |= 0x10;  // bit 12: first padding bit
  test::expect_corrupt(d, p, "padding", {}, "padding");
  for (float bad : {-2.0f, -0.0f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    p = good;
    store_f32(p.data() + norm, bad);
    test::expect_corrupt(d, p, "norm", {}, "bad norm");
  }
  p = good;
  store_f32(p.data() + norm, 0.0f);
  test::expect_corrupt(d, p, "norm is 0", {}, "zero norm with levels");
  p = good;
  p[7] = kFlagDense;
  test::expect_corrupt(d, p, "dense flag", {}, "dense flag");
  p = good;
  store_u32(p.data() + 24, 3);
  test::expect_corrupt(d, p, "count", {}, "count");
  test::expect_truncations_rejected(d, good);
  // A dense payload must carry the flag.
  const auto dd = desc_or_die("qsgd_topk:n=5,k=5");
  std::vector<std::uint8_t> dense;
  ASSERT_TRUE(ref::compress(dd, {}, test::normal_data(5, 1), dense).ok());
  dense[7] = 0;
  EXPECT_EQ(test::decode(dd, dense).code(), StatusCode::kCorruptPayload);
  // qsgd_randk shared: no indices, body = codes + norm.
  const auto dr = desc_or_die("qsgd_randk:n=40,k=4,levels=2,seed=1");
  std::vector<std::uint8_t> pr;
  ASSERT_TRUE(ref::compress(dr, {}, v, pr).ok());
  ASSERT_EQ(pr.size(), kHeaderBytes + 8);
  test::expect_truncations_rejected(dr, pr);
  pr[kHeaderBytes + 3] |= 0x80;
  EXPECT_EQ(test::decode(dr, pr).code(), StatusCode::kCorruptPayload);
}

}  // namespace
}  // namespace gradcomp
