// threshold (algorithms.md §4.8 (a)): known answers for the sparse and the dense form, the
// sparse/dense switch, tau edge cases, non-homogeneity, sizes, the NaN policy, corrupt payloads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

// C(v) from the definition: v_j where |v_j| > max(tau, 0) (in double), else 0.
std::vector<float> model(const std::vector<float>& v, double tau) {
  std::vector<float> out(v.size(), 0.0f);
  for (std::size_t j = 0; j < v.size(); ++j)
    if (std::fabs(static_cast<double>(v[j])) > std::max(tau, 0.0)) out[j] = v[j];
  return out;
}

// ---- known answers -----------------------------------------------------------------------------

TEST(Threshold, KnownAnswerSparse) {
  // tau = 0.5, n = 10: |v| > 0.5 at 1 (-1), 3 (2), 5 (-0.75), 7 (3); 0.5 itself is not > 0.5.
  // 4 pairs = 32 bytes < 40 dense bytes: sparse. f32: -1 = 0xbf800000, 2 = 0x40000000,
  // -0.75 = 0xbf400000, 3 = 0x40400000.
  const auto d = desc_or_die("threshold:n=10,tau=0.5");
  const std::vector<float> v = {0.25f, -1, 0.5f, 2, 0, -0.75f, 0.1f, 3, 0, 0};
  auto want = test::expected_header(11, 10, 4, 32);
  test::append_bytes(want, {1, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0});
  test::append_bytes(want, {0x00, 0x00, 0x80, 0xbf, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0xbf,
                            0x00, 0x00, 0x40, 0x40});
  EXPECT_EQ(test::compress_ok(d, v), want);
  EXPECT_EQ(roundtrip(d, v), (std::vector<float>{0, -1, 0, 2, 0, -0.75f, 0, 3, 0, 0}));
  EXPECT_EQ(ref::payload_bytes(d), 32u + 40u);  // the maximum: dense
}

TEST(Threshold, KnownAnswerDense) {
  // tau = 0.3, n = 4: 1, 2 and 0.5 pass, -0.25 does not. 3 pairs = 24 bytes >= 16 dense bytes:
  // dense, count = n, the body is C(v) = [1, +0, 2, 0.5] (not the raw -0.25).
  const auto d = desc_or_die("threshold:n=4,tau=0.3");
  const std::vector<float> v = {1, -0.25f, 2, 0.5f};
  auto want = test::expected_header(11, 4, 4, 16, kFlagDense);
  test::append_bytes(
      want, {0x00, 0x00, 0x80, 0x3f, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x3f});
  EXPECT_EQ(test::compress_ok(d, v), want);
  EXPECT_EQ(roundtrip(d, v), (std::vector<float>{1, 0, 2, 0.5f}));
}

TEST(Threshold, DenseExactlyWhenPairsAreNotSmaller) {
  // n = 4: 2 selected -> 16 >= 16 bytes: dense; 1 selected -> 8 < 16: sparse.
  const auto d = desc_or_die("threshold:n=4,tau=1");
  EXPECT_EQ(test::compress_ok(d, {2, 0, -3, 0})[7], kFlagDense);
  EXPECT_EQ(test::compress_ok(d, {2, 0, 0.5f, 0})[7], 0);
  // n = 5: 2 selected -> 16 < 20: sparse; 3 -> 24 >= 20: dense.
  const auto d5 = desc_or_die("threshold:n=5,tau=1");
  EXPECT_EQ(test::compress_ok(d5, {2, 0, -3, 0, 0}).size(), 32u + 16u);
  EXPECT_EQ(test::compress_ok(d5, {2, 0, -3, 0, 4}).size(), 32u + 20u);
}

// ---- tau edge cases ----------------------------------------------------------------------------

TEST(Threshold, TauEdgeCases) {
  const std::vector<float> v = {0, -0.0f, 1e-30f, -1e-45f, 0.1f, -2, 0, 0, 0, 0, 0, 0};
  // tau <= 0: every non-zero (denormals included), never +-0.
  for (const char* tau : {"0", "-1", "-1e300"}) {
    const auto d = desc_or_die("threshold:n=12,tau=" + std::string(tau));
    EXPECT_EQ(roundtrip(d, v),
              (std::vector<float>{0, 0, 1e-30f, -1e-45f, 0.1f, -2, 0, 0, 0, 0, 0, 0}))
        << tau;
  }
  // Strict comparison: |v| == tau is not selected.
  EXPECT_EQ(roundtrip(desc_or_die("threshold:n=12,tau=2"), v), std::vector<float>(12, 0.0f));
  // The comparison is in double: float(0.1) = 0.100000001490116... > 0.1, so tau = 0.1 keeps it;
  // tau = float(0.1) exactly does not.
  EXPECT_EQ(roundtrip(desc_or_die("threshold:n=12,tau=0.1"), v)[4], 0.1f);
  CompressorDesc exact = desc_or_die("threshold:n=12");
  exact.tau = static_cast<double>(0.1f);
  EXPECT_EQ(roundtrip(exact, v)[4], 0.0f);
  // A huge tau sends nothing: an empty sparse message.
  std::vector<std::uint8_t> p;
  EXPECT_EQ(roundtrip(desc_or_die("threshold:n=12,tau=1e300"), v, {}, &p),
            std::vector<float>(12, 0.0f));
  EXPECT_EQ(p, test::expected_header(11, 12, 0, 0));
}

TEST(Threshold, IsNotHomogeneous) {
  // tau = 1, v = [0.75]: C(v) = 0 but C(2v) = 1.5 != 2 C(v).
  const auto d = desc_or_die("threshold:n=1,tau=1");
  EXPECT_EQ(roundtrip(d, {0.75f})[0], 0.0f);
  EXPECT_EQ(roundtrip(d, {1.5f})[0], 1.5f);
  // On normal data some coordinate differs, while a homogeneous compressor (topk) agrees.
  const auto v = test::normal_data(1000, 3);
  std::vector<float> v2(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) v2[i] = 2 * v[i];
  const auto dt = desc_or_die("threshold:n=1000,tau=1");
  const auto c1 = roundtrip(dt, v), c2 = roundtrip(dt, v2);
  int differ = 0;
  for (std::size_t i = 0; i < v.size(); ++i) differ += c2[i] != 2 * c1[i];
  EXPECT_GT(differ, 100);  // elements with |v| in (0.5, 1]: about 30% of N(0, 1)
  const auto dk = desc_or_die("topk:n=1000,density=0.1");
  const auto t1 = roundtrip(dk, v), t2 = roundtrip(dk, v2);
  for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(t2[i], 2 * t1[i]);
}

// ---- sizes and round trips ---------------------------------------------------------------------

TEST(Threshold, PayloadSizeAndRoundTripAtEdgeSizes) {
  for (std::uint64_t n : test::edge_sizes()) {
    for (double tau : {-1.0, 0.1, 1.0, 3.0, 10.0}) {
      CompressorDesc d = desc_or_die("threshold:n=" + std::to_string(n));
      d.tau = tau;
      EXPECT_EQ(ref::payload_bytes(d), 32 + 4 * n);
      const auto v = test::normal_data(n, 31);
      std::vector<std::uint8_t> p;
      const auto out = roundtrip(d, v, {}, &p);
      const auto want = model(v, tau);
      ASSERT_EQ(out, want) << "n = " << n << " tau = " << tau;
      std::uint64_t c = 0;
      for (float x : want) c += x != 0.0f;
      const bool dense = n > 0 && 8 * c >= 4 * n;
      EXPECT_EQ(p.size(), dense ? 32 + 4 * n : 32 + 8 * c) << "n = " << n << " tau = " << tau;
      EXPECT_EQ(load_u32(p.data() + 24), dense ? n : c);
      EXPECT_EQ(p[7], dense ? kFlagDense : 0);
      if (n <= 1100) test::expect_truncations_rejected(d, p);
    }
  }
}

TEST(Threshold, BadInputPolicy) {
  // n = 0: empty sparse message; n = 1 works; all zeros send nothing.
  EXPECT_EQ(test::compress_ok(desc_or_die("threshold:n=0"), {}),
            test::expected_header(11, 0, 0, 0));
  EXPECT_EQ(roundtrip(desc_or_die("threshold:n=1,tau=0.5"), {-0.75f}), std::vector<float>{-0.75f});
  std::vector<std::uint8_t> p;
  EXPECT_EQ(roundtrip(desc_or_die("threshold:n=100,tau=-1"), std::vector<float>(100, 0.0f), {}, &p),
            std::vector<float>(100, 0.0f));
  EXPECT_EQ(p.size(), 32u);
  // Non-finite: rejected by default; under propagate NaN never passes |x| > tau (dropped) and
  // Inf always does.
  std::vector<float> v(10, 0.0f);
  v[2] = std::nanf("");
  v[7] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(ref::compress(desc_or_die("threshold:n=10"), {}, v, p).code(), StatusCode::kNonFinite);
  const auto out = roundtrip(desc_or_die("threshold:n=10,nonfinite=propagate"), v);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[7], -std::numeric_limits<float>::infinity());
}

// ---- corrupted payloads ------------------------------------------------------------------------

TEST(Threshold, RejectsEveryBadField) {
  const auto d = desc_or_die("threshold:n=10,tau=0.5");
  const std::vector<float> v = {0.25f, -1, 0.5f, 2, 0, -0.75f, 0.1f, 3, 0, 0};
  const auto p = test::compress_ok(d, v);  // sparse, 4 pairs: indices 1, 3, 5, 7
  test::expect_truncations_rejected(d, p);
  const auto body = test::body_of(p);
  // count / body disagreement.
  test::expect_corrupt(d, test::rebuild(p, 3, 0, body), "sparse body");
  // Sparse with count >= n / 2 (5 of 10): dense must be used.
  {
    std::vector<std::uint8_t> b(40, 0);
    for (std::uint32_t i = 0; i < 5; ++i) {
      store_u32(b.data() + 4 * i, 2 * i);
      store_f32(b.data() + 20 + 4 * i, 9.0f);
    }
    test::expect_corrupt(d, test::rebuild(p, 5, 0, b), "dense form must be used");
  }
  // Indices: out of range, not increasing.
  auto b = body;
  store_u32(b.data() + 12, 10);
  test::expect_corrupt(d, test::rebuild(p, 4, 0, b), "out of range");
  b = body;
  store_u32(b.data() + 4, 1);
  test::expect_corrupt(d, test::rebuild(p, 4, 0, b), "not strictly increasing");
  // Values that cannot pass |x| > 0.5: 0.5 itself, 0, -0, NaN.
  for (float bad : {0.5f, -0.25f, 0.0f, -0.0f, std::nanf("")}) {
    b = body;
    store_f32(b.data() + 16 + 8, bad);
    test::expect_corrupt(d, test::rebuild(p, 4, 0, b), "does not exceed the threshold");
  }
  // Inf passes the threshold but is not finite under nonfinite=error; fine under propagate.
  b = body;
  store_f32(b.data() + 16, std::numeric_limits<float>::infinity());
  test::expect_corrupt(d, test::rebuild(p, 4, 0, b), "not finite");
  EXPECT_TRUE(test::decode(desc_or_die("threshold:n=10,tau=0.5,nonfinite=propagate"),
                           test::rebuild(p, 4, 0, b))
                  .ok());

  // Dense payloads: n = 4, tau = 0.3, body [1, +0, 2, 0.5].
  const auto dd = desc_or_die("threshold:n=4,tau=0.3");
  const auto pd = test::compress_ok(dd, {1, -0.25f, 2, 0.5f});
  test::expect_truncations_rejected(dd, pd);
  const auto bd = test::body_of(pd);
  test::expect_corrupt(dd, test::rebuild(pd, 3, kFlagDense, bd), "count");
  // An unselected entry must be +0: -0 and 0.25 (below tau) are rejected.
  for (float bad : {-0.0f, 0.25f, std::nanf("")}) {
    auto c = bd;
    store_f32(c.data() + 4, bad);
    test::expect_corrupt(dd, test::rebuild(pd, 4, kFlagDense, c),
                         "neither +0 nor above the threshold");
  }
  // Too few selected values for dense (1 of 4: the sparse form is smaller).
  {
    std::vector<std::uint8_t> c(16, 0);
    store_f32(c.data(), 1.0f);
    test::expect_corrupt(dd, test::rebuild(pd, 4, kFlagDense, c), "sparse form is smaller");
  }
  {
    std::vector<std::uint8_t> c(16, 0);  // [1, +0, -Inf, 0.5]
    store_f32(c.data(), 1.0f);
    store_f32(c.data() + 8, -std::numeric_limits<float>::infinity());
    store_f32(c.data() + 12, 0.5f);
    test::expect_corrupt(dd, test::rebuild(pd, 4, kFlagDense, c), "not finite");
  }
  // Dense flag for n = 0.
  const auto d0 = desc_or_die("threshold:n=0");
  test::expect_corrupt(d0, test::expected_header(11, 0, 0, 0, kFlagDense), "n = 0");
}

}  // namespace
}  // namespace gradcomp
