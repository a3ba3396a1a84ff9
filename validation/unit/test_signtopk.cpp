// signtopk (algorithms.md §4.10): the known answer with a tie, the least-squares optimality of
// the scale, the error identity, the payload formula, the bad-input policy, corrupt payloads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

// The known-answer body of KnownAnswerWithTie (20 bytes), built field by field.
std::vector<std::uint8_t> known_body(std::uint32_t i0, std::uint32_t i1, std::uint32_t i2,
                                     std::uint32_t sign_word, float scale) {
  std::vector<std::uint8_t> b(20, 0);
  store_u32(b.data() + 0, i0);
  store_u32(b.data() + 4, i1);
  store_u32(b.data() + 8, i2);
  store_u32(b.data() + 12, sign_word);
  store_f32(b.data() + 16, scale);
  return b;
}

// ---- known answers -----------------------------------------------------------------------------

TEST(SignTopK, KnownAnswerWithTie) {
  // v = [0.5, -2, 1, 0, -1, 3], k = 3: |v| = 3 (5), 2 (1), then 1 at 2 and 4 tie -> index 2.
  // S = {1, 2, 5}; scale = (2 + 1 + 3) / 3 = 2; signs: 1 negative (bit 0 = 1), 2 and 5
  // positive -> sign word 0x00000001. Body: 3 u32 + 1 sign word + f32 2.0 = 0x40000000 = 20 B.
  const auto d = desc_or_die("signtopk:n=6,k=3");
  const std::vector<float> v = {0.5f, -2, 1, 0, -1, 3};
  auto want = test::expected_header(16, 6, 3, 20);
  test::append_bytes(want,
                     {1, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0x00, 0x00, 0x00, 0x40});
  EXPECT_EQ(test::compress_ok(d, v), want);
  EXPECT_EQ(roundtrip(d, v), (std::vector<float>{0, -2, 2, 0, 0, 2}));
}

TEST(SignTopK, ZerosInTheSupportDecodeToPlusScale) {
  // v = [0, 0, -0, 1], k = 2: S = {3, 0} (1, then the tie among zeros -> index 0); scale =
  // (1 + 0) / 2 = 0.5; sgn(0) = +1, so index 0 decodes to +0.5. -0 (index 2) is not in S.
  EXPECT_EQ(roundtrip(desc_or_die("signtopk:n=4,k=2"), {0, 0, -0.0f, 1}),
            (std::vector<float>{0.5f, 0, 0, 0.5f}));
  // -0 in the support is +scale as well (bit set only for x < 0).
  EXPECT_EQ(roundtrip(desc_or_die("signtopk:n=3,k=2"), {-0.0f, 0, 2}),
            (std::vector<float>{1, 0, 1}));
}

// ---- properties ---------------------------------------------------------------------------------

TEST(SignTopK, ScaleIsLeastSquaresOptimalOnTheSupport) {
  // On S the output is s * sgn(v_j). f(s) = sum_S (v_j - s sgn v_j)^2 has f'(s) = 2 (k s -
  // sum_S |v_j|) = 0 at s = ||v_S||_1 / k: check that the stored scale is that value (to f32
  // rounding) and that f increases on both sides.
  for (std::uint64_t n : {33ull, 1023ull, 4097ull}) {
    for (const char* density : {"0.01", "0.1", "0.5"}) {
      const auto d =
          desc_or_die("signtopk:density=" + std::string(density) + ",n=" + std::to_string(n));
      const std::uint64_t k = sparsifier_k(d, n);
      const auto v = test::normal_data(n, n);
      const auto out = roundtrip(d, v);
      // The support is the exact top-k (compare with topk's support).
      const auto topk = roundtrip(
          desc_or_die("topk:density=" + std::string(density) + ",n=" + std::to_string(n)), v);
      double l1 = 0;
      float s = 0;
      std::uint64_t support = 0;
      for (std::uint64_t j = 0; j < n; ++j) {
        ASSERT_EQ(out[j] != 0.0f, topk[j] != 0.0f) << j;
        if (out[j] == 0.0f) continue;
        ++support;
        l1 += std::fabs(static_cast<double>(v[j]));
        s = std::fabs(out[j]);
        ASSERT_EQ(std::signbit(out[j]), v[j] < 0) << j;
      }
      ASSERT_EQ(support, k);
      EXPECT_EQ(s, static_cast<float>(l1 / static_cast<double>(k)));
      auto f = [&](double scale) {
        double r = 0;
        for (std::uint64_t j = 0; j < n; ++j) {
          if (topk[j] == 0.0f) continue;
          const double e = v[j] - scale * (v[j] < 0 ? -1.0 : 1.0);
          r += e * e;
        }
        return r;
      };
      for (double delta : {1e-3, 1e-2, 0.1}) {
        EXPECT_LT(f(s), f(s * (1 + delta))) << d.to_string();
        EXPECT_LT(f(s), f(s * (1 - delta))) << d.to_string();
      }
    }
  }
}

TEST(SignTopK, ErrorIdentity) {
  // ||v - C(v)||^2 = ||v||^2 - ||v_S||_1^2 / k (expand the square on S with s = ||v_S||_1 / k).
  for (std::uint64_t n : {100ull, 4097ull}) {
    const auto d = desc_or_die("signtopk:density=0.05,n=" + std::to_string(n));
    const std::uint64_t k = sparsifier_k(d, n);
    const auto v = test::normal_data(n, 77);
    const auto out = roundtrip(d, v);
    double err = 0, l1 = 0;
    for (std::uint64_t j = 0; j < n; ++j) {
      err += (v[j] - static_cast<double>(out[j])) * (v[j] - static_cast<double>(out[j]));
      if (out[j] != 0.0f) l1 += std::fabs(static_cast<double>(v[j]));
    }
    const double want = test::sum_sq(v) - l1 * l1 / static_cast<double>(k);
    EXPECT_NEAR(err, want, 1e-5 * test::sum_sq(v));
    EXPECT_LT(err, test::sum_sq(v));
  }
}

TEST(SignTopK, PayloadFormulaAndEdgeSizes) {
  // 32 + 4k (indices) + 4 ceil(k / 32) (sign words) + 4 (scale); k = 0: 32; k >= n: 32 + 4n.
  for (std::uint64_t n :
       {0ull, 1ull, 2ull, 31ull, 32ull, 33ull, 64ull, 65ull, 1023ull, 4097ull, (1ull << 20) + 3}) {
    for (const char* opt :
         {"density=0", "density=0.001", "density=0.25", "density=1", "k=32", "k=33"}) {
      const auto d = desc_or_die("signtopk:" + std::string(opt) + ",n=" + std::to_string(n));
      const std::uint64_t k = sparsifier_k(d, n);
      std::uint64_t want = k == 0 ? 32 : 32 + 4 * k + 4 * ((k + 31) / 32) + 4;
      const bool dense = n > 0 && k >= n;
      if (dense) want = 32 + 4 * n;
      EXPECT_EQ(ref::payload_bytes(d), want) << d.to_string();
      if (n > 5000 && std::string(opt) != "density=0.001") continue;
      const auto v = test::normal_data(n, 5);
      std::vector<std::uint8_t> p;
      const auto out = roundtrip(d, v, {}, &p);
      EXPECT_EQ(p.size(), want);
      EXPECT_EQ(load_u32(p.data() + 24), dense ? n : k);
      EXPECT_EQ(p[7], dense ? kFlagDense : 0);
      if (dense) {
        EXPECT_EQ(out, v);  // k >= n: the exact vector
      }
      if (n <= 1100) test::expect_truncations_rejected(d, p);
    }
  }
  // Example of §4.10: d = 10^6, k = 1000: 32 + 4000 + 128 + 4 bytes.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("signtopk:n=1000000,k=1000")), 4164u);
}

TEST(SignTopK, BadInputPolicy) {
  std::vector<std::uint8_t> p;
  EXPECT_EQ(roundtrip(desc_or_die("signtopk:n=10,density=0"), test::normal_data(10), {}, &p),
            std::vector<float>(10, 0.0f));
  EXPECT_EQ(p, test::expected_header(16, 10, 0, 0));
  EXPECT_EQ(test::compress_ok(desc_or_die("signtopk:n=0"), {}), test::expected_header(16, 0, 0, 0));
  EXPECT_EQ(roundtrip(desc_or_die("signtopk:n=1"), {-0.75f}), std::vector<float>{-0.75f});
  // All zeros: scale 0, every output 0 (no division by zero: the divisor is k >= 1).
  EXPECT_EQ(roundtrip(desc_or_die("signtopk:n=100,k=10"), std::vector<float>(100, 0.0f)),
            std::vector<float>(100, 0.0f));
  // NaN / Inf: rejected by default; under propagate NaN ranks first and the scale is NaN.
  auto v = test::normal_data(40, 2);
  v[9] = std::nanf("");
  EXPECT_EQ(ref::compress(desc_or_die("signtopk:n=40,k=4"), {}, v, p).code(),
            StatusCode::kNonFinite);
  const auto out = roundtrip(desc_or_die("signtopk:n=40,k=4,nonfinite=propagate"), v);
  EXPECT_TRUE(std::isnan(out[9]));
  v[9] = -std::numeric_limits<float>::infinity();
  const auto inf = roundtrip(desc_or_die("signtopk:n=40,k=4,nonfinite=propagate"), v);
  EXPECT_EQ(inf[9], -std::numeric_limits<float>::infinity());
}

// ---- corrupted payloads ------------------------------------------------------------------------

TEST(SignTopK, RejectsEveryBadField) {
  const auto d = desc_or_die("signtopk:n=6,k=3");
  const auto p = test::compress_ok(d, {0.5f, -2, 1, 0, -1, 3});
  ASSERT_EQ(p.size(), 52u);
  test::expect_truncations_rejected(d, p);
  const auto good = known_body(1, 2, 5, 1, 2.0f);
  ASSERT_EQ(test::rebuild(p, 3, 0, good), p);  // the hand-built body is the real one
  test::expect_corrupt(d, test::rebuild(p, 3, kFlagDense, good), "dense flag");
  test::expect_corrupt(d, test::rebuild(p, 2, 0, good), "count 2 != k 3");
  auto longer = good;
  longer.resize(24);
  test::expect_corrupt(d, test::rebuild(p, 3, 0, longer), "body is 24 bytes");
  test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(1, 2, 6, 1, 2.0f)), "out of range");
  test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(2, 1, 5, 1, 2.0f)),
                       "not strictly increasing");
  test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(1, 1, 5, 1, 2.0f)),
                       "not strictly increasing");
  test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(1, 2, 5, 1 | 8, 2.0f)), "padding");
  test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(1, 2, 5, 0x80000001u, 2.0f)),
                       "padding");
  test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(1, 2, 5, 1, -2.0f)), "negative");
  test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(1, 2, 5, 1, -0.0f)), "negative");
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    test::expect_corrupt(d, test::rebuild(p, 3, 0, known_body(1, 2, 5, 1, bad)), "not finite");
    EXPECT_TRUE(test::decode(desc_or_die("signtopk:n=6,k=3,nonfinite=propagate"),
                             test::rebuild(p, 3, 0, known_body(1, 2, 5, 1, bad)))
                    .ok());
  }
  // k = 0: any body is wrong.
  const auto d0 = desc_or_die("signtopk:n=6,k=0");
  test::expect_corrupt(d0, test::rebuild(p, 0, 0, good), "body is 20 bytes");
  // Dense (k >= n): flag required, count n, finite values.
  const auto dd = desc_or_die("signtopk:n=2,k=2");
  const auto pd = test::compress_ok(dd, {1, -2});
  std::vector<std::uint8_t> dense_body(8, 0);
  store_f32(dense_body.data(), 1.0f);
  store_f32(dense_body.data() + 4, -2.0f);
  ASSERT_EQ(test::rebuild(pd, 2, kFlagDense, dense_body), pd);
  test::expect_corrupt(dd, test::rebuild(pd, 2, 0, dense_body), "dense flag");
  test::expect_corrupt(dd, test::rebuild(pd, 1, kFlagDense, dense_body), "count");
  store_f32(dense_body.data() + 4, std::nanf(""));
  test::expect_corrupt(dd, test::rebuild(pd, 2, kFlagDense, dense_body), "not finite");
}

}  // namespace
}  // namespace gradcomp
