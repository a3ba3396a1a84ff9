// dgc (algorithms.md §5.4.1): known answers written from the DGC code's rules, the sampled
// threshold's branches (x0.8 decay, > 1.3 k exact top-k, truncation in index order), the exact
// mode against topk, the bad-input policy and every corrupted-payload case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

// The elements DGC's code would sample for (seed, step 0, tensor 0, rank) with this stride: the
// offset is uniform_below(stride) at element 0 of the rank's kDgcSampling stream (dgc.md).
std::uint64_t sample_offset(std::uint64_t seed, std::uint32_t rank, std::uint64_t stride) {
  return RngStream(seed, RngPurpose::kDgcSampling, 0, 0, rank).uniform_below(stride, 0);
}

// ---- known answers -----------------------------------------------------------------------------

TEST(Dgc, KnownAnswerWithoutSampling) {
  // n = 5, k = 2 (density 0.4: ceil(2.0) = 2); cpr = ceil(2 / 0.4) = 5 >= n: no sampling, the
  // threshold is the exact 2nd largest |v| = 2. Candidates |v| >= 2: indices 1, 2, 3 (3 > k, but
  // without sampling there is no adaptation): truncation keeps the first two, 1 and 2.
  const auto d = desc_or_die("dgc:n=5,density=0.4");
  const std::vector<float> v = {0.5f, -2.0f, 3.0f, 2.0f, -1.0f};
  auto want = test::expected_header(9, 5, 2, 16);
  test::append_bytes(want, {1, 0, 0, 0, 2, 0, 0, 0});  // indices 1, 2
  // -2.0f = 0xc0000000, 3.0f = 0x40400000, little-endian.
  test::append_bytes(want, {0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x40, 0x40});
  EXPECT_EQ(test::compress_ok(d, v), want);
  EXPECT_EQ(roundtrip(d, v), (std::vector<float>{0.0f, -2.0f, 3.0f, 0.0f, 0.0f}));
}

TEST(Dgc, CodeModeTruncationCanDropTheLargest) {
  // n = 3, density 0.5: k = ceil(1.5) = 2, cpr = 4 >= 3. 2nd largest |v| = 1, every element
  // passes |v| >= 1, and the index-order truncation keeps 0 and 1: the largest (2) is not sent.
  // The exact mode sends indices 0 (ties to the lower index) and 2.
  const std::vector<float> v = {1.0f, 1.0f, 2.0f};
  EXPECT_EQ(roundtrip(desc_or_die("dgc:n=3,density=0.5"), v),
            (std::vector<float>{1.0f, 1.0f, 0.0f}));
  EXPECT_EQ(roundtrip(desc_or_die("dgc:n=3,density=0.5,selection=exact"), v),
            (std::vector<float>{1.0f, 0.0f, 2.0f}));
}

TEST(Dgc, ZeroValuesAreDroppedEvenWhenSelected) {
  // k = 3 of n = 4 (explicit k; 2n/k = 8/3, cpr = 3 < 4 would sample, so use sample_ratio=1,
  // where stride 1 and n_samp = n: no sampling). 3rd largest |v| = 0: thr = 0, all pass,
  // truncation keeps 0, 1, 2 - all zero - and zeros are dropped: count 0, even though 5 exists.
  const auto d = desc_or_die("dgc:n=4,k=3,sample_ratio=1");
  const std::vector<float> v = {0.0f, -0.0f, 0.0f, 5.0f};
  std::vector<std::uint8_t> p;
  const auto out = roundtrip(d, v, {}, &p);
  EXPECT_EQ(p, test::expected_header(9, 4, 0, 0));
  EXPECT_EQ(out, std::vector<float>(4, 0.0f));
  // Exact mode picks 3 (|5|) then ties 0, 1; the zeros are dropped: one pair.
  EXPECT_EQ(roundtrip(desc_or_die("dgc:n=4,k=3,selection=exact"), v),
            (std::vector<float>{0, 0, 0, 5}));
}

// ---- the sampled threshold ---------------------------------------------------------------------
//
// n = 100000, density 0.01 (hand-computed plan, §5.4.1): k = 1000, pct = ceil(1000) = 1000,
// cpr = ceil(2 / 0.01) = 200, m = max(pct, cpr) = 1000; stride = ceil(100000 / 1000 / 32) * 32
// + 1 = 4 * 32 + 1 = 129 -> n div 129 = 775 < 1000; 121 -> 826; 113 -> 884; 105 -> 952;
// 97 -> 1030 >= 1000: stride 97, n_samp = 1030, k_samp = ceil(1030 * 0.01) = ceil(10.3) = 11.
constexpr std::uint64_t kBigN = 100000;
constexpr std::uint64_t kStride = 97;
constexpr std::uint64_t kSeed = 5;

struct Sampled {
  std::uint64_t off;
  bool is_sample(std::uint64_t j) const { return j >= off && (j - off) % kStride == 0; }
};

CompressorDesc big_desc() {
  return desc_or_die("dgc:n=100000,density=0.01,seed=" + std::to_string(kSeed));
}

// Probe of the per-tensor plan: k_samp - 1 values 2.0 and one 0.05 on the positions the plan
// samples (off + stride * i), 0.001 elsewhere. With the right stride and k_samp the threshold is
// 0.05 and exactly k_samp candidates survive ten x0.8 rounds (0.05 * 0.8^10 = 0.0054 > 0.001):
// count = k_samp. A wrong stride samples other positions (thr = 0.001: every element is a
// candidate, exact top-k: count = k); k_samp one too large gives thr 0.001 as well, one too small
// gives thr 2 and count k_samp - 1.
std::uint32_t probe_count(const CompressorDesc& d, std::uint64_t stride, std::uint64_t k_samp) {
  const std::uint64_t off = sample_offset(d.seed, 0, stride);
  std::vector<float> v(d.n, 0.001f);
  for (std::uint64_t i = 0; i + 1 < k_samp; ++i) v[off + stride * i] = 2.0f;
  v[off + stride * (k_samp - 1)] = 0.05f;
  std::vector<std::uint8_t> p;
  roundtrip(d, v, {}, &p);
  return test::count_of(p);
}

TEST(Dgc, SamplingPlanMatchesHandComputation) {
  struct Case {
    const char* text;
    std::uint64_t stride, k_samp;
  };
  const Case cases[] = {
      // k = 1000, pct = 1000, cpr = 200, m = 1000: 129 (775) 121 (826) 113 (884) 105 (952)
      // 97 (1030 >= 1000); k_samp = ceil(10.3) = 11.
      {"dgc:n=100000,density=0.01,seed=5", 97, 11},
      // sample_ratio 0.001 is clamped to 0.01 (the DGC code's rule): the same plan.
      {"dgc:n=100000,density=0.01,seed=5,sample_ratio=0.001", 97, 11},
      // explicit k = 1000: rho = k / n = 0.01, cpr = ceil(2n / k) = 200: the same plan.
      {"dgc:n=100000,k=1000,seed=5", 97, 11},
      // pct = 5000, m = 5000: ceil(100000 / 5000 / 32) = 1 -> 33 (3030) 25 (4000) 17 (5882);
      // k_samp = ceil(58.82) = 59.
      {"dgc:n=100000,density=0.01,seed=5,sample_ratio=0.05", 17, 59},
      // k = 65, pct = 65, cpr = 200, m = 200: ceil(6500 / 200 / 32) = 2 -> 65 (100) 57 (114)
      // 49 (132) 41 (158) 33 (196) 25 (260); k_samp = ceil(2.6) = 3.
      {"dgc:n=6500,density=0.01,seed=8", 25, 3},
      // k = 160, pct = 80, cpr = 100, m = 100: ceil(8000 / 100 / 32) = 3 -> 97 (82) 89 (89)
      // 81 (98) 73 (109); k_samp = ceil(2.18) = 3.
      {"dgc:n=8000,density=0.02,seed=8", 73, 3},
  };
  for (const Case& c : cases) {
    const auto d = desc_or_die(c.text);
    EXPECT_EQ(probe_count(d, c.stride, c.k_samp), c.k_samp) << c.text;
    // The probe is sharp: a neighbouring stride or k_samp is told apart.
    EXPECT_NE(probe_count(d, c.stride + 8, c.k_samp), c.k_samp) << c.text;
    EXPECT_NE(probe_count(d, c.stride, c.k_samp + 1), c.k_samp + 1) << c.text;
  }
}

TEST(Dgc, DecayLoopLowersTheThreshold) {
  const Sampled s{sample_offset(kSeed, 0, kStride)};
  std::vector<float> v(kBigN, 0.001f);
  for (int i = 0; i < 11; ++i) v[s.off + kStride * i] = 1.0f;  // the 11 largest samples: thr = 1
  // Non-sampled tiers just above / below the x0.8 thresholds 0.8, 0.64, 0.512, 0.4096:
  // 300 at 0.65, 600 at -0.52, 200 at 0.5.
  std::uint64_t j = 50000;
  for (int placed = 0; placed < 1100; ++j) {
    if (s.is_sample(j)) continue;
    v[j] = placed < 300 ? 0.65f : placed < 900 ? -0.52f : 0.5f;
    ++placed;
  }
  // Rounds: thr 1 -> 11 candidates < 800 = 0.8k; thr 0.8 -> 11; thr 0.64 -> 311;
  // thr 0.512 -> 911 in [800, 1000]: stop. All 911 are sent (<= k, no truncation); the 0.5
  // tier is not. (A factor 0.9 would stop at 0.478 with 1111 candidates and truncate; 0.7
  // likewise at 0.49.) The exact top-k would add 89 of the 0.5 elements.
  std::vector<std::uint8_t> p;
  const auto out = roundtrip(big_desc(), v, {}, &p);
  EXPECT_EQ(test::count_of(p), 911u);
  for (std::uint64_t i = 0; i < kBigN; ++i) {
    const float want = std::fabs(v[i]) > 0.51f ? v[i] : 0.0f;
    ASSERT_EQ(out[i], want) << "element " << i;
  }
}

TEST(Dgc, DecayLoopRunsExactlyTenRounds) {
  // 11 sampled ones, 900 non-sampled elements at `tier`, the rest 0.001. After r rounds the
  // threshold is 0.8^r (float): 0.8^9 = 0.134, 0.8^10 = 0.1074, 0.8^11 = 0.0859.
  //  - tier 0.11: the 10th round reaches 0.1074 < 0.11: 911 candidates, sent.
  //  - tier 0.10: ten rounds end at 0.1074 > 0.10 with 11 candidates: 11 sent (an 11th round
  //    would have found the 900).
  const Sampled s{sample_offset(kSeed, 0, kStride)};
  for (float tier : {0.11f, 0.10f}) {
    std::vector<float> v(kBigN, 0.001f);
    for (int i = 0; i < 11; ++i) v[s.off + kStride * i] = -1.0f;
    std::uint64_t j = 30000;
    for (int placed = 0; placed < 900; ++j) {
      if (s.is_sample(j)) continue;
      v[j] = tier;
      ++placed;
    }
    std::vector<std::uint8_t> p;
    const auto out = roundtrip(big_desc(), v, {}, &p);
    EXPECT_EQ(test::count_of(p), tier > 0.105f ? 911u : 11u) << "tier " << tier;
    for (int i = 0; i < 11; ++i) EXPECT_EQ(out[s.off + kStride * i], -1.0f);
  }
}

TEST(Dgc, FarTooManyCandidatesUseExactTopKAmongThem) {
  // Every sample is 0.5, so thr = 0.5 and every sampled element is a candidate (>= 1030); 2000
  // non-sampled elements are >= 1 (distinct), the rest 0.1. 3000+ > 1.3k = 1300 candidates: the
  // exact top 1000 among them = the 1000 largest of the 2000 = the exact top-k of v.
  const Sampled s{sample_offset(kSeed, 0, kStride)};
  std::vector<float> v(kBigN, 0.1f);
  for (std::uint64_t j = s.off; j < kBigN; j += kStride) v[j] = 0.5f;
  std::uint64_t j = 7;
  for (int placed = 0; placed < 2000; j += 41) {
    if (s.is_sample(j)) continue;
    v[j] = (placed % 2 ? -1.0f : 1.0f) * (1.0f + 1e-4f * static_cast<float>(placed));
    ++placed;
  }
  std::vector<std::uint8_t> p;
  const auto out = roundtrip(big_desc(), v, {}, &p);
  EXPECT_EQ(test::count_of(p), 1000u);
  EXPECT_EQ(out, roundtrip(desc_or_die("topk:n=100000,density=0.01"), v));
}

TEST(Dgc, ModeratelyManyCandidatesAreTruncatedInIndexOrder) {
  // thr = 1 (11 sampled ones at indices < 1100), plus `twos` non-sampled 2.0 at indices >= 50000.
  //  - 1289 twos: 1300 candidates, 1000 < 1300 <= 1.3k = 1300: stop and keep the first 1000 by
  //    index = the 11 ones and the first 989 twos. The last 300 twos are not sent although they
  //    are larger than sent values: "every sent |x| >= every unsent |x|" does not hold in code
  //    mode; count <= k does.
  //  - 1290 twos: 1301 > 1300 candidates: exact top-k among them = the first 1000 twos (ties go
  //    to the lower index); no one is sent.
  const Sampled s{sample_offset(kSeed, 0, kStride)};
  for (std::size_t n_twos : {1289u, 1290u}) {
    std::vector<float> v(kBigN, 0.001f);
    for (int i = 0; i < 11; ++i) v[s.off + kStride * i] = 1.0f;
    std::vector<std::uint64_t> twos;
    for (std::uint64_t j = 50000; twos.size() < n_twos; ++j) {
      if (s.is_sample(j)) continue;
      v[j] = 2.0f;
      twos.push_back(j);
    }
    const bool exact = n_twos == 1290;
    std::vector<std::uint8_t> p;
    const auto out = roundtrip(big_desc(), v, {}, &p);
    EXPECT_EQ(test::count_of(p), 1000u);
    for (int i = 0; i < 11; ++i) EXPECT_EQ(out[s.off + kStride * i], exact ? 0.0f : 1.0f);
    const std::size_t sent_twos = exact ? 1000 : 989;
    for (std::size_t t = 0; t < twos.size(); ++t) {
      ASSERT_EQ(out[twos[t]], t < sent_twos ? 2.0f : 0.0f) << "two #" << t << " of " << n_twos;
    }
  }
}

TEST(Dgc, RanksSampleDifferentlyAndSeedsAreDeterministic) {
  const auto d = big_desc();
  const auto v = test::normal_data(kBigN, 3);
  std::set<std::vector<std::uint8_t>> distinct;
  for (std::uint32_t rank = 0; rank < 6; ++rank) {
    ref::CompressContext ctx;
    ctx.rank = rank;
    const auto p = test::compress_ok(d, v, ctx);
    EXPECT_EQ(p, test::compress_ok(d, v, ctx)) << "same key, same bytes";
    distinct.insert(p);
  }
  // Different offsets give different thresholds; ranks whose candidates exceed 1.3 k all end in
  // the same exact top-k, so only "not all equal" is guaranteed on normal data.
  EXPECT_GE(distinct.size(), 2u);
  std::set<std::uint64_t> offsets;
  for (std::uint32_t rank = 0; rank < 6; ++rank) offsets.insert(sample_offset(kSeed, rank, 97));
  EXPECT_GE(offsets.size(), 4u);

  // Data that reveals the offset: 11 ones on rank 0's sample positions, 0.001 elsewhere. Rank 0
  // samples the ones (thr = 1, ten x0.8 rounds, 11 sent); rank 1 samples only 0.001 (thr = 0.001,
  // every element a candidate, > 1.3 k: exact top 1000 sent).
  const std::uint64_t off0 = sample_offset(kSeed, 0, kStride);
  const std::uint64_t off1 = sample_offset(kSeed, 1, kStride);
  ASSERT_NE(off0, off1);
  std::vector<float> w(kBigN, 0.001f);
  for (int i = 0; i < 11; ++i) w[off0 + kStride * i] = 1.0f;
  ref::CompressContext r1;
  r1.rank = 1;
  EXPECT_EQ(test::count_of(test::compress_ok(d, w)), 11u);
  EXPECT_EQ(test::count_of(test::compress_ok(d, w, r1)), 1000u);
}

TEST(Dgc, SentCountNeverExceedsKAndValuesAreExact) {
  // Normal data at many keys: count <= k, every sent value is the input value, index order is
  // checked by the decoder, and v = sent + residual holds coordinate-wise (DGC's masking).
  for (std::uint64_t n : {1023ull, 4097ull, 100000ull}) {
    for (const char* density : {"0.001", "0.01", "0.1"}) {
      const auto d = desc_or_die("dgc:density=" + std::string(density) + ",n=" + std::to_string(n));
      const std::uint64_t k = sparsifier_k(d, n);
      const auto v = test::normal_data(n, n + 1);
      for (std::uint32_t step = 0; step < 3; ++step) {
        ref::CompressContext ctx;
        ctx.step = step;
        ctx.rank = step * 7;
        std::vector<std::uint8_t> p;
        const auto out = roundtrip(d, v, ctx, &p);
        ASSERT_LE(test::count_of(p), k) << d.to_string();
        EXPECT_EQ(p.size(), kHeaderBytes + 8 * test::count_of(p));
        std::uint64_t nonzero = 0;
        for (std::uint64_t i = 0; i < n; ++i) {
          if (out[i] != 0.0f) {
            ASSERT_EQ(out[i], v[i]);
            ++nonzero;
          }
        }
        EXPECT_EQ(nonzero, test::count_of(p));
        EXPECT_GT(nonzero, 0u);
      }
    }
  }
}

// Without sampling, code mode selects {j : |x_j| >= k-th largest |x|}, truncated to the first k
// by index, minus zeros. Checked by a direct implementation of that sentence.
std::vector<float> no_sampling_model(const std::vector<float>& v, std::uint64_t k) {
  std::vector<float> mags;
  for (float x : v) mags.push_back(std::fabs(x));
  std::sort(mags.begin(), mags.end(), std::greater<float>());
  const float kth = mags[k - 1];
  std::vector<float> out(v.size(), 0.0f);
  std::uint64_t taken = 0;
  for (std::size_t j = 0; j < v.size() && taken < k; ++j) {
    if (std::fabs(v[j]) >= kth) {
      out[j] = v[j];
      ++taken;
    }
  }
  return out;
}

TEST(Dgc, WithoutSamplingSelectsThresholdThenIndexOrder) {
  // Data with many ties and zeros: quarter steps of N(0, 1).
  for (std::uint64_t n : {2ull, 3ull, 17ull, 200ull, 1023ull, 4097ull}) {
    auto v = test::normal_data(n, 40 + n);
    for (float& x : v) x = std::round(x * 4.0f) / 4.0f;
    // n <= cpr = ceil(2 / rho): rho = 2 / n gives k = 2 and cpr = n.
    const double rho = 2.0 / static_cast<double>(n);
    CompressorDesc small = desc_or_die("dgc:n=" + std::to_string(n));
    small.density = rho;
    ASSERT_EQ(sparsifier_k(small, n), std::min<std::uint64_t>(2, n));
    if (n > 2) {
      EXPECT_EQ(roundtrip(small, v), no_sampling_model(v, 2)) << "n = " << n;
    }
    // sample_ratio = 1: stride 1 for any density (the code's while-loop walks it down to 1).
    for (const char* density : {"0.05", "0.3"}) {
      const auto d = desc_or_die("dgc:sample_ratio=1,density=" + std::string(density) +
                                 ",n=" + std::to_string(n));
      const std::uint64_t k = sparsifier_k(d, n);
      if (k >= n) continue;  // dense
      EXPECT_EQ(roundtrip(d, v), no_sampling_model(v, k)) << d.to_string();
    }
  }
}

TEST(Dgc, ExactSelectionEqualsTopKOnDataWithoutZeros) {
  for (std::uint64_t n : test::edge_sizes()) {
    const auto v = test::normal_data(n, 9);  // no exact zeros
    for (const char* density : {"0.001", "0.3"}) {
      if (n > 5000 && std::string(density) == "0.3") continue;  // keep the 2^20 case fast
      const std::string opts = "density=" + std::string(density) + ",n=" + std::to_string(n);
      const auto dgc = desc_or_die("dgc:selection=exact," + opts);
      const auto topk = desc_or_die("topk:" + opts);
      std::vector<std::uint8_t> pd, pt;
      EXPECT_EQ(roundtrip(dgc, v, {}, &pd), roundtrip(topk, v, {}, &pt)) << opts;
      // Same body bytes (count k pairs); only the compressor id in the header differs.
      ASSERT_EQ(pd.size(), pt.size());
      pd[6] = pt[6];
      EXPECT_EQ(pd, pt) << opts;
    }
  }
}

// ---- sizes, edge sizes and the bad-input policy
// --------------------------------------------------

TEST(Dgc, PayloadBytesIsTheMaximumAndCountIsConsistent) {
  for (std::uint64_t n : {0ull, 1ull, 2ull, 31ull, 32ull, 33ull, 999ull, 1000ull, 1001ull, 1023ull,
                          4097ull, (1ull << 20) + 3}) {
    for (const char* opt : {"density=0", "density=0.001", "density=0.25", "density=1", "k=5"}) {
      const auto d = desc_or_die("dgc:" + std::string(opt) + ",n=" + std::to_string(n));
      const std::uint64_t k = sparsifier_k(d, n);
      const bool dense = n > 0 && k >= n;
      EXPECT_EQ(ref::payload_bytes(d), dense ? 32 + 4 * n : 32 + 8 * k) << d.to_string();
      if (n > 5000) continue;
      std::vector<std::uint8_t> p;
      const auto v = test::normal_data(n, 2);
      const auto out = roundtrip(d, v, {}, &p);
      EXPECT_LE(p.size(), ref::payload_bytes(d));
      if (dense) {
        EXPECT_EQ(p[7], kFlagDense);
        EXPECT_EQ(test::count_of(p), n);
        EXPECT_EQ(out, v);  // k >= n: exact
      } else {
        EXPECT_EQ(p[7], 0);
        EXPECT_EQ(p.size(), 32 + 8 * test::count_of(p));
      }
      if (n <= 1100) test::expect_truncations_rejected(d, p);
    }
  }
}

TEST(Dgc, EdgeSizesBothModes) {
  for (std::uint64_t n : test::edge_sizes()) {
    for (const char* sel : {"code", "exact"}) {
      const auto d =
          desc_or_die("dgc:selection=" + std::string(sel) + ",density=0.01,n=" + std::to_string(n));
      const auto v = test::normal_data(n, 21);
      std::vector<std::uint8_t> p;
      const auto out = roundtrip(d, v, {}, &p);
      ASSERT_EQ(out.size(), n);
      const std::uint64_t k = sparsifier_k(d, n);
      std::uint64_t sent = 0;
      for (std::uint64_t i = 0; i < n; ++i) {
        if (out[i] != 0.0f) {
          ASSERT_EQ(out[i], v[i]);
          ++sent;
        }
      }
      if (n > 0 && k >= n) {
        EXPECT_EQ(sent, n);
      } else {
        EXPECT_EQ(sent, test::count_of(p));
        EXPECT_LE(sent, k);
        if (n > 0) {
          EXPECT_GT(sent, 0u);
        }
      }
    }
  }
}

TEST(Dgc, KZeroSendsNothingAndKAtLeastNSendsDense) {
  const auto v = test::normal_data(10, 4);
  std::vector<std::uint8_t> p;
  EXPECT_EQ(roundtrip(desc_or_die("dgc:n=10,density=0"), v, {}, &p), std::vector<float>(10, 0.0f));
  EXPECT_EQ(p, test::expected_header(9, 10, 0, 0));
  EXPECT_EQ(roundtrip(desc_or_die("dgc:n=10,k=10"), v, {}, &p), v);
  EXPECT_EQ(p.size(), 32u + 40u);
  EXPECT_EQ(p[7], kFlagDense);
  EXPECT_EQ(roundtrip(desc_or_die("dgc:n=10,k=99"), v), v);
  // n = 1: k = 1 >= n, dense; n = 0: empty sparse message.
  EXPECT_EQ(roundtrip(desc_or_die("dgc:n=1"), {-0.75f}), std::vector<float>{-0.75f});
  EXPECT_EQ(test::compress_ok(desc_or_die("dgc:n=0"), {}), test::expected_header(9, 0, 0, 0));
  // All zeros: nothing but zeros could be picked, and zeros are dropped.
  for (const char* sel : {"code", "exact"}) {
    const auto d = desc_or_die("dgc:n=5000,density=0.01,selection=" + std::string(sel));
    EXPECT_EQ(roundtrip(d, std::vector<float>(5000, 0.0f), {}, &p), std::vector<float>(5000, 0.0f));
    EXPECT_EQ(test::count_of(p), 0u);
  }
}

TEST(Dgc, NonFinitePolicy) {
  auto v = test::normal_data(5000, 6);
  v[123] = std::numeric_limits<float>::infinity();
  std::vector<std::uint8_t> p = {1};
  EXPECT_EQ(ref::compress(desc_or_die("dgc:n=5000,density=0.01"), {}, v, p).code(),
            StatusCode::kNonFinite);
  EXPECT_EQ(p, std::vector<std::uint8_t>{1});
  // propagate: Inf and NaN are the largest magnitudes and are always sent.
  v[4000] = std::nanf("");
  for (const char* sel : {"code", "exact"}) {
    const auto d =
        desc_or_die("dgc:n=5000,density=0.01,nonfinite=propagate,selection=" + std::string(sel));
    const auto out = roundtrip(d, v);
    EXPECT_EQ(out[123], std::numeric_limits<float>::infinity()) << sel;
    EXPECT_TRUE(std::isnan(out[4000])) << sel;
  }
}

// ---- corrupted payloads ------------------------------------------------------------------------

TEST(Dgc, RejectsEveryBadField) {
  const auto d = desc_or_die("dgc:n=10,k=3,seed=1");
  const std::vector<float> v = {0.1f, 5, -0.2f, 0.3f, -6, 0.4f, 7, 0.5f, 0.6f, 0.7f};
  const auto p = test::compress_ok(d, v);
  ASSERT_EQ(test::count_of(p), 3u);
  test::expect_truncations_rejected(d, p);
  const auto body = test::body_of(p);

  // Dense flag where k < n forbids it.
  test::expect_corrupt(d, test::rebuild(p, 3, kFlagDense, body), "dense flag");
  // count > k (4 pairs).
  {
    std::vector<std::uint8_t> big;
    for (std::uint32_t i : {1u, 4u, 6u, 9u}) {
      big.resize(big.size() + 4);
      store_u32(big.data() + big.size() - 4, i);
    }
    for (int i = 0; i < 4; ++i) {
      big.resize(big.size() + 4);
      store_f32(big.data() + big.size() - 4, 1.0f);
    }
    test::expect_corrupt(d, test::rebuild(p, 4, 0, big), "exceeds the maximum");
  }
  // count smaller than the body holds.
  test::expect_corrupt(d, test::rebuild(p, 2, 0, body), "sparse body");
  // Index out of range, indices not increasing, repeated index.
  {
    auto b = body;
    store_u32(b.data() + 8, 10);
    test::expect_corrupt(d, test::rebuild(p, 3, 0, b), "out of range");
    b = body;
    store_u32(b.data() + 0, 4);  // 4, 4, 6
    test::expect_corrupt(d, test::rebuild(p, 3, 0, b), "not strictly increasing");
    b = body;
    store_u32(b.data() + 0, 7);  // 7, 4, 6
    test::expect_corrupt(d, test::rebuild(p, 3, 0, b), "not strictly increasing");
  }
  // A zero value (never sent), +0 and -0.
  for (float z : {0.0f, -0.0f}) {
    auto b = body;
    store_f32(b.data() + 12 + 4, z);
    test::expect_corrupt(d, test::rebuild(p, 3, 0, b), "zero");
  }
  // Non-finite values under nonfinite=error; accepted under propagate.
  for (float bad : {std::nanf(""), -std::numeric_limits<float>::infinity()}) {
    auto b = body;
    store_f32(b.data() + 12, bad);
    test::expect_corrupt(d, test::rebuild(p, 3, 0, b), "not finite");
    const auto dp = desc_or_die("dgc:n=10,k=3,seed=1,nonfinite=propagate");
    EXPECT_TRUE(test::decode(dp, test::rebuild(p, 3, 0, b)).ok());
  }
  // Dense payload: flag missing, wrong count, non-finite value.
  const auto dd = desc_or_die("dgc:n=4,k=4");
  const auto pd = test::compress_ok(dd, {1, 2, 3, 4});
  test::expect_corrupt(dd, test::rebuild(pd, 4, 0, test::body_of(pd)), "dense flag");
  test::expect_corrupt(dd, test::rebuild(pd, 3, kFlagDense, test::body_of(pd)), "count");
  auto bd = test::body_of(pd);
  store_f32(bd.data() + 8, std::numeric_limits<float>::infinity());
  test::expect_corrupt(dd, test::rebuild(pd, 4, kFlagDense, bd), "not finite");
}

}  // namespace
}  // namespace gradcomp
