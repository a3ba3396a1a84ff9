// randk (algorithms.md §4.7): the index keying re-derived from the documented Floyd draws,
// uniformity of the index sets, unbiasedness of rescale=unbiased (and the same test flagging
// biased variants), shared vs private indices, sizes, the bad-input policy and corrupt payloads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

// The index set, read back from a private-index payload (indices first in the body).
std::vector<std::uint32_t> private_indices(const std::vector<std::uint8_t>& p) {
  const std::uint32_t count = load_u32(p.data() + 24);
  std::vector<std::uint32_t> idx(count);
  for (std::uint32_t i = 0; i < count; ++i) idx[i] = load_u32(p.data() + kHeaderBytes + 4 * i);
  return idx;
}

// Floyd's algorithm exactly as docs/compressors/randk.md states it, written out again here:
// for j = n-k .. n-1: t = uniform_below(j + 1) at element j; take t, or j if t is taken.
std::set<std::uint64_t> floyd(const RngStream& s, std::uint64_t n, std::uint64_t k) {
  std::set<std::uint64_t> chosen;
  for (std::uint64_t j = n - k; j < n; ++j) {
    const std::uint64_t t = s.uniform_below(j + 1, j);
    chosen.insert(chosen.count(t) ? j : t);
  }
  return chosen;
}

// ---- known answers -----------------------------------------------------------------------------

TEST(RandK, KnownAnswerSharedIndicesUnbiased) {
  // n = 5, k = 2, rescale=unbiased: every sent value is v * n/k = v * 2.5, exactly representable:
  // v = [1, -2, 0.5, 4, -8] -> [2.5, -5, 1.25, 10, -20] = f32 0x40200000, 0xc0a00000,
  // 0x3fa00000, 0x41200000, 0xc1a00000. The index set comes from the shared stream
  // (seed 3, kRandKIndices, step 0, tensor 0, kSharedRank).
  const auto d = desc_or_die("randk:n=5,k=2,seed=3,rescale=unbiased");
  const std::vector<float> v = {1, -2, 0.5f, 4, -8};
  const std::uint32_t bits[5] = {0x40200000u, 0xc0a00000u, 0x3fa00000u, 0x41200000u, 0xc1a00000u};
  const auto idx = floyd(RngStream(3, RngPurpose::kRandKIndices, 0, 0, kSharedRank), 5, 2);
  ASSERT_EQ(idx.size(), 2u);
  auto want = test::expected_header(10, 5, 2, 8);  // body: 2 f32 values, no indices
  for (std::uint64_t j : idx) {
    for (int b = 0; b < 4; ++b) want.push_back(static_cast<std::uint8_t>(bits[j] >> (8 * b)));
  }
  EXPECT_EQ(test::compress_ok(d, v), want);
  // Private: the rank's own stream, and (index, value) pairs.
  const auto dp = desc_or_die("randk:n=5,k=2,seed=3,rescale=unbiased,indices=private");
  ref::CompressContext ctx;
  ctx.rank = 2;
  const auto pidx = floyd(RngStream(3, RngPurpose::kRandKIndices, 0, 0, 2), 5, 2);
  auto wantp = test::expected_header(10, 5, 2, 16);
  for (std::uint64_t j : pidx) {
    for (int b = 0; b < 4; ++b) wantp.push_back(static_cast<std::uint8_t>(j >> (8 * b)));
  }
  for (std::uint64_t j : pidx) {
    for (int b = 0; b < 4; ++b) wantp.push_back(static_cast<std::uint8_t>(bits[j] >> (8 * b)));
  }
  EXPECT_EQ(test::compress_ok(dp, v, ctx), wantp);
  // Decoded: 2.5 v on the set, 0 elsewhere.
  const auto out = roundtrip(d, v);
  for (std::uint64_t j = 0; j < 5; ++j) EXPECT_EQ(out[j], idx.count(j) ? 2.5f * v[j] : 0.0f);
}

TEST(RandK, FloydMatchesTheSharedHelperAtManySizes) {
  for (std::uint64_t n : {1ull, 7ull, 100ull, 4097ull}) {
    for (std::uint64_t k : {1ull, 3ull, 50ull}) {
      if (k >= n) continue;
      const auto d = desc_or_die("randk:indices=private,seed=9,n=" + std::to_string(n) +
                                 ",k=" + std::to_string(k));
      ref::CompressContext ctx;
      ctx.step = 4;
      ctx.tensor_id = 8;
      ctx.rank = 5;
      const auto got = private_indices(test::compress_ok(d, test::normal_data(n, 1), ctx));
      const auto want = floyd(RngStream(9, RngPurpose::kRandKIndices, 4, 8, 5), n, k);
      EXPECT_EQ(std::set<std::uint64_t>(got.begin(), got.end()), want) << d.to_string();
    }
  }
}

// ---- statistics
// ----------------------------------------------------------------------------------

// Two-sided normal quantile for p = 0.001 / 10 and 0.001 / 50 and 0.001 / 20 (Bonferroni over
// the tested cells), from the normal table.
constexpr double kZ10 = 3.891;
constexpr double kZ20 = 4.056;
constexpr double kZ50 = 4.265;

TEST(RandK, EveryTwoSubsetIsEquallyLikely) {
  // n = 5, k = 2: 10 subsets, each with p = 1/10. T = 20000 draws (steps): count ~ Bin(T, 0.1),
  // mean 2000, sd sqrt(T p (1 - p)) = 42.4. Every |z| < 3.891 (alpha 0.001, Bonferroni over 10).
  const auto d = desc_or_die("randk:n=5,k=2,seed=12,indices=private");
  const int trials = 20000;
  auto max_z = [&](const std::function<std::vector<std::uint32_t>(std::uint32_t)>& draw) {
    std::map<std::vector<std::uint32_t>, int> counts;
    for (std::uint32_t t = 0; t < trials; ++t) ++counts[draw(t)];
    double worst = 0;
    int subsets = 0;
    for (std::uint32_t a = 0; a < 5; ++a) {
      for (std::uint32_t b = a + 1; b < 5; ++b) {
        const double c = counts[{a, b}];
        worst = std::max(worst, std::fabs(c - trials * 0.1) / std::sqrt(trials * 0.1 * 0.9));
        ++subsets;
      }
    }
    EXPECT_EQ(subsets, 10);
    return worst;
  };
  const auto v = test::normal_data(5, 2);
  EXPECT_LT(max_z([&](std::uint32_t t) {
              ref::CompressContext ctx;
              ctx.step = t;
              return private_indices(test::compress_ok(d, v, ctx));
            }),
            kZ10);
  // Negative control: a plausible but wrong sampler (a random start and its right neighbour)
  // never produces {0, 2}: the same check must flag it.
  EXPECT_GT(max_z([&](std::uint32_t t) {
              const std::uint32_t s = static_cast<std::uint32_t>(
                  RngStream(12, RngPurpose::kTestData, t, 0, 0).uniform_below(5, 0));
              std::vector<std::uint32_t> pair = {s, (s + 1) % 5};
              std::sort(pair.begin(), pair.end());
              return pair;
            }),
            kZ10);
}

TEST(RandK, InclusionFrequencyIsKOverN) {
  // n = 50, k = 5, 20000 steps at rank 3: each index included with p = 0.1; Bonferroni over 50.
  const auto d = desc_or_die("randk:n=50,k=5,seed=4,indices=private");
  const auto v = test::normal_data(50, 3);
  const int trials = 20000;
  std::vector<int> hits(50, 0);
  for (std::uint32_t t = 0; t < trials; ++t) {
    ref::CompressContext ctx;
    ctx.step = t;
    ctx.rank = 3;
    const auto idx = private_indices(test::compress_ok(d, v, ctx));
    ASSERT_EQ(idx.size(), 5u);
    for (std::uint32_t j : idx) ++hits[j];
  }
  for (int j = 0; j < 50; ++j) {
    const double z = (hits[j] - trials * 0.1) / std::sqrt(trials * 0.1 * 0.9);
    EXPECT_LT(std::fabs(z), kZ50) << "index " << j << " hits " << hits[j];
  }
}

// Per-element z-scores of the Monte-Carlo mean of `decoded(step)` against x, with the variance
// of rescale=unbiased: Var[C(x)_j] = x_j^2 (n/k - 1). Returns the largest |z|.
double max_bias_z(const std::vector<float>& x, double n_over_k, int trials,
                  const std::function<std::vector<float>(std::uint32_t)>& decoded) {
  const std::vector<double> sum = test::monte_carlo_sums(x.size(), trials, decoded).sum;
  double worst = 0;
  for (std::size_t j = 0; j < x.size(); ++j) {
    const double se = std::fabs(x[j]) * std::sqrt((n_over_k - 1.0) / trials);
    worst = std::max(worst, std::fabs(sum[j] / trials - x[j]) / se);
  }
  return worst;
}

TEST(RandK, UnbiasedWithRescaleAndTheSameTestFlagsBiasedVariants) {
  // n = 20, k = 4 (n/k = 5), 20000 steps, shared indices; Bonferroni over 20 elements.
  const auto x = test::normal_data(20, 8);
  const int trials = 20000;
  auto run = [&](const std::string& opts, float fudge) {
    const auto d = desc_or_die("randk:n=20,k=4,seed=2," + opts);
    return [d, &x, fudge](std::uint32_t step) {
      ref::CompressContext ctx;
      ctx.step = step;
      auto out = roundtrip(d, x, ctx);
      for (float& o : out) o *= fudge;
      return out;
    };
  };
  EXPECT_LT(max_bias_z(x, 5.0, trials, run("rescale=unbiased", 1.0f)), kZ20);
  EXPECT_LT(max_bias_z(x, 5.0, trials, run("rescale=unbiased,indices=private", 1.0f)), kZ20);
  // rescale=none has mean (k/n) x: biased. A test-written variant off by 10% is biased too.
  EXPECT_GT(max_bias_z(x, 5.0, trials, run("rescale=none", 1.0f)), kZ20);
  EXPECT_GT(max_bias_z(x, 5.0, trials, run("rescale=unbiased", 0.9f)), kZ20);

  // Total variance: E||C(x) - x||^2 = (n/k - 1) ||x||^2 (sum of the per-element variances).
  const auto d = desc_or_die("randk:n=20,k=4,seed=2,rescale=unbiased");
  double mse = 0;
  for (std::uint32_t t = 0; t < static_cast<std::uint32_t>(trials); ++t) {
    ref::CompressContext ctx;
    ctx.step = t;
    const auto out = roundtrip(d, x, ctx);
    for (std::size_t j = 0; j < x.size(); ++j) mse += (out[j] - x[j]) * double(out[j] - x[j]);
  }
  mse /= trials;
  EXPECT_NEAR(mse / (4.0 * test::sum_sq(x)), 1.0, 0.05);
}

// ---- shared vs private
// ---------------------------------------------------------------------------

TEST(RandK, SharedIndicesAgreeAcrossRanksPrivateDiffer) {
  const auto shared = desc_or_die("randk:n=1000,k=10,seed=6");
  const auto priv = desc_or_die("randk:n=1000,k=10,seed=6,indices=private");
  const auto v = test::normal_data(1000, 5);
  std::set<std::vector<std::uint32_t>> private_sets;
  std::vector<std::uint8_t> p0;
  std::vector<float> out0;
  for (std::uint32_t rank = 0; rank < 4; ++rank) {
    ref::CompressContext ctx;
    ctx.rank = rank;
    const auto p = test::compress_ok(shared, v, ctx);
    const auto out = roundtrip(shared, v, ctx);
    if (rank == 0) {
      p0 = p;
      out0 = out;
    }
    EXPECT_EQ(p, p0) << "rank " << rank;
    EXPECT_EQ(out, out0) << "rank " << rank;
    // The receiver's rank does not matter for shared indices: decode rank 0's message here.
    std::vector<float> other(1000);
    ASSERT_TRUE(ref::decompress(shared, ctx, p0, Span<float>(other)).ok());
    EXPECT_EQ(other, out0);
    private_sets.insert(private_indices(test::compress_ok(priv, v, ctx)));
  }
  EXPECT_EQ(private_sets.size(), 4u) << "private index sets must differ across ranks";
  // Shared sets change with the step and the tensor id.
  ref::CompressContext s1, t1;
  s1.step = 1;
  t1.tensor_id = 1;
  EXPECT_NE(roundtrip(shared, v, s1), out0);
  EXPECT_NE(roundtrip(shared, v, t1), out0);
}

// ---- sizes and the bad-input policy
// --------------------------------------------------------------

TEST(RandK, PayloadSizeFormula) {
  for (std::uint64_t n :
       {0ull, 1ull, 2ull, 31ull, 32ull, 33ull, 1000ull, 1023ull, 4097ull, (1ull << 20) + 3}) {
    for (const char* opt : {"density=0", "density=0.001", "density=0.5", "density=1", "k=7"}) {
      for (const char* mode : {"shared", "private"}) {
        const auto d = desc_or_die("randk:" + std::string(opt) + ",indices=" + mode +
                                   ",n=" + std::to_string(n));
        const std::uint64_t k = sparsifier_k(d, n);
        std::uint64_t want = 32 + (std::string(mode) == "shared" ? 4 * k : 8 * k);
        if (n > 0 && k >= n) want = 32 + 4 * n;
        EXPECT_EQ(ref::payload_bytes(d), want) << d.to_string();
        if (n > 5000) continue;
        std::vector<std::uint8_t> p;
        const auto v = test::normal_data(n, 3);
        const auto out = roundtrip(d, v, {}, &p);
        EXPECT_EQ(p.size(), want);
        EXPECT_EQ(load_u32(p.data() + 24), n > 0 && k >= n ? n : k);
        if (n <= 1100) test::expect_truncations_rejected(d, p);
      }
    }
  }
}

TEST(RandK, EdgeSizesKeepExactValuesOnTheSet) {
  for (std::uint64_t n : test::edge_sizes()) {
    for (const char* opts : {"rescale=none", "rescale=unbiased,indices=private"}) {
      const auto d =
          desc_or_die("randk:density=0.001," + std::string(opts) + ",n=" + std::to_string(n));
      const std::uint64_t k = sparsifier_k(d, n);
      const auto v = test::normal_data(n, 13);  // no zeros
      const auto out = roundtrip(d, v);
      const bool dense = n > 0 && k >= n;
      const double scale = (d.randk_scale == RandKScale::kUnbiased && !dense)
                               ? static_cast<double>(n) / static_cast<double>(k)
                               : 1.0;
      std::uint64_t kept = 0;
      for (std::uint64_t j = 0; j < n; ++j) {
        if (out[j] == 0.0f) continue;
        ASSERT_EQ(out[j], static_cast<float>(static_cast<double>(v[j]) * scale)) << j;
        ++kept;
      }
      EXPECT_EQ(kept, dense ? n : k) << d.to_string();
    }
  }
}

TEST(RandK, BadInputPolicy) {
  const auto v = test::normal_data(10, 4);
  std::vector<std::uint8_t> p;
  // k = 0: header only, decodes to zeros (also with rescale: no division by k = 0).
  EXPECT_EQ(roundtrip(desc_or_die("randk:n=10,k=0,rescale=unbiased"), v, {}, &p),
            std::vector<float>(10, 0.0f));
  EXPECT_EQ(p, test::expected_header(10, 10, 0, 0));
  // k >= n: dense and exact (n/k = 1).
  EXPECT_EQ(roundtrip(desc_or_die("randk:n=10,k=10,rescale=unbiased"), v, {}, &p), v);
  EXPECT_EQ(p[7], kFlagDense);
  EXPECT_EQ(roundtrip(desc_or_die("randk:n=1"), {-0.75f}), std::vector<float>{-0.75f});
  EXPECT_EQ(test::compress_ok(desc_or_die("randk:n=0"), {}), test::expected_header(10, 0, 0, 0));
  EXPECT_EQ(
      roundtrip(desc_or_die("randk:n=100,k=10,rescale=unbiased"), std::vector<float>(100, 0.0f)),
      std::vector<float>(100, 0.0f));
  // NaN rejected by default; propagated on request.
  auto bad = v;
  bad[3] = std::nanf("");
  EXPECT_EQ(ref::compress(desc_or_die("randk:n=10,k=9"), {}, bad, p).code(),
            StatusCode::kNonFinite);
  const auto out = roundtrip(desc_or_die("randk:n=10,k=10,nonfinite=propagate"), bad);
  EXPECT_TRUE(std::isnan(out[3]));
  // x * n / k overflowing f32 is a non-finite message value: rejected under nonfinite=error.
  const std::vector<float> huge(10, 3e38f);
  p = {5};
  Status s = ref::compress(desc_or_die("randk:n=10,k=1,rescale=unbiased"), {}, huge, p);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite) << s.to_string();
  EXPECT_NE(s.message().find("overflows"), std::string::npos) << s.message();
  EXPECT_EQ(p, std::vector<std::uint8_t>{5});
  const auto inf =
      roundtrip(desc_or_die("randk:n=10,k=1,rescale=unbiased,nonfinite=propagate"), huge);
  EXPECT_EQ(std::count(inf.begin(), inf.end(), std::numeric_limits<float>::infinity()), 1);
}

// ---- corrupted payloads ------------------------------------------------------------------------

TEST(RandK, RejectsEveryBadField) {
  const auto v = test::normal_data(20, 7);
  // Shared: k values only.
  const auto ds = desc_or_die("randk:n=20,k=3,seed=1");
  const auto ps = test::compress_ok(ds, v);
  test::expect_truncations_rejected(ds, ps);
  test::expect_corrupt(ds, test::rebuild(ps, 3, kFlagDense, test::body_of(ps)), "dense flag");
  test::expect_corrupt(ds, test::rebuild(ps, 2, 0, test::body_of(ps)), "count 2 != k 3");
  auto longer = test::body_of(ps);
  longer.resize(longer.size() + 4);
  test::expect_corrupt(ds, test::rebuild(ps, 3, 0, longer), "shared-index values");
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    auto b = test::body_of(ps);
    store_f32(b.data() + 4, bad);
    test::expect_corrupt(ds, test::rebuild(ps, 3, 0, b), "not finite");
    EXPECT_TRUE(test::decode(desc_or_die("randk:n=20,k=3,seed=1,nonfinite=propagate"),
                             test::rebuild(ps, 3, 0, b))
                    .ok());
  }
  // Private: (index, value) pairs.
  const auto dp = desc_or_die("randk:n=20,k=3,seed=1,indices=private");
  const auto pp = test::compress_ok(dp, v);
  test::expect_truncations_rejected(dp, pp);
  test::expect_corrupt(dp, test::rebuild(pp, 2, 0, test::body_of(pp)), "count 2 != k 3");
  auto b = test::body_of(pp);
  store_u32(b.data() + 8, 20);
  test::expect_corrupt(dp, test::rebuild(pp, 3, 0, b), "out of range");
  b = test::body_of(pp);
  store_u32(b.data() + 4, load_u32(b.data()));  // repeated index
  test::expect_corrupt(dp, test::rebuild(pp, 3, 0, b), "not strictly increasing");
  b = test::body_of(pp);
  store_f32(b.data() + 12, -std::numeric_limits<float>::infinity());
  test::expect_corrupt(dp, test::rebuild(pp, 3, 0, b), "not finite");
  // Dense: flag must be set when k >= n; count must be n.
  const auto dd = desc_or_die("randk:n=4,k=4");
  const auto pd = test::compress_ok(dd, {1, 2, 3, 4});
  test::expect_corrupt(dd, test::rebuild(pd, 4, 0, test::body_of(pd)), "dense flag");
  test::expect_corrupt(dd, test::rebuild(pd, 5, kFlagDense, test::body_of(pd)), "count");
  test::expect_truncations_rejected(dd, pd);
}

}  // namespace
}  // namespace gradcomp
