// powersgd (rank-r power iteration, single-worker view, algorithms.md §4.11): the worked example
// 7 of §8, E10, exact rank-1 reconstruction, warm-start convergence, the Gram-Schmidt building
// block, the zero matrix, dense vectors, the warm-start state's error guarantees, the payload
// formula and every corrupted-payload case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "gradcomp/ref/powersgd.hpp"
#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

constexpr std::uint8_t kPowerSgdId = 17;

ref::CompressContext with_state(ref::PowerSgdState* state, std::uint32_t step = 0) {
  ref::CompressContext ctx;
  ctx.powersgd = state;
  ctx.step = step;
  return ctx;
}

double dist_sq(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}

TEST(PowerSgd, WorkedExample7) {
  // §8 example 7: M = [[1,2],[3,4]], Q = [1,0]^T given through the state, rank 1:
  // P = M Q = [1,3]^T, P^ = [1,3]/sqrt(10) = [0.316228, 0.948683]^T,
  // Q = M^T P^ = [10, 14]/sqrt(10) = [3.162278, 4.427189]^T, output P^ Q^T = [[1, 1.4],[3, 4.2]].
  const auto d = desc_or_die("powersgd:shapes=2x2,rank=1");
  ref::PowerSgdState state;
  state.q = {{1.0f, 0.0f}};
  std::vector<std::uint8_t> p;
  const std::vector<float> m = {1, 2, 3, 4};
  auto out = roundtrip(d, m, with_state(&state), &p);
  ASSERT_EQ(p.size(), 32u + 16u);    // r'(n + m) = 1 * (2 + 2) floats
  EXPECT_EQ(test::count_of(p), 1u);  // count = one segment
  const double s10 = std::sqrt(10.0);
  EXPECT_NEAR(load_f32(p.data() + 32), 1.0 / s10, 1e-6);
  EXPECT_NEAR(load_f32(p.data() + 36), 3.0 / s10, 1e-6);
  EXPECT_NEAR(load_f32(p.data() + 40), 10.0 / s10, 1e-6);
  EXPECT_NEAR(load_f32(p.data() + 44), 14.0 / s10, 1e-6);
  const std::vector<double> want = {1.0, 1.4, 3.0, 4.2};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], want[i], 1e-5) << i;
  // EF residual M - output = [[0, 0.6], [0, -0.2]].
  EXPECT_NEAR(m[1] - out[1], 0.6, 1e-5);
  EXPECT_NEAR(m[3] - out[3], -0.2, 1e-5);
  // The warm-start state now holds the Q that was sent.
  ASSERT_EQ(state.q.size(), 1u);
  ASSERT_EQ(state.q[0].size(), 2u);
  EXPECT_EQ(float_bits(state.q[0][0]), load_u32(p.data() + 40));
  EXPECT_EQ(float_bits(state.q[0][1]), load_u32(p.data() + 44));
}

TEST(PowerSgd, KnownAnswerBytes) {
  // M (4x2) = [[1,5],[1,-3],[1,2],[1,0]], Q = [1,0]^T: P = [1,1,1,1]^T, ||P|| = 2,
  // P^ = 1/(2 + 1e-8) = 0.4999999975 -> f32 0.5 (the f32 spacing below 0.5 is 3e-8);
  // Q = M^T P^ = [0.5 * 4, 0.5 * (5 - 3 + 2 + 0)] = [2, 2]; output rows [1, 1].
  const auto d = desc_or_die("powersgd:shapes=4x2,rank=1");
  ref::PowerSgdState state;
  state.q = {{1.0f, 0.0f}};
  const std::vector<float> m = {1, 5, 1, -3, 1, 2, 1, 0};
  std::vector<std::uint8_t> p;
  auto out = roundtrip(d, m, with_state(&state), &p);
  auto want = test::expected_header(kPowerSgdId, 8, 1, 24);
  for (int i = 0; i < 4; ++i) test::append_u32(want, 0x3F000000u);  // 0.5f
  for (int i = 0; i < 2; ++i) test::append_u32(want, 0x40000000u);  // 2.0f
  EXPECT_EQ(p, want);
  EXPECT_EQ(out, std::vector<float>(8, 1.0f));
}

TEST(PowerSgd, FullRankReproducesTheMatrix) {
  // E10: r >= min(n, m) (clamped to r' = min(n, m)) with a generic Q reproduces M up to rounding.
  for (const char* text : {"powersgd:shapes=5x3,rank=3,seed=3", "powersgd:shapes=3x5,rank=7,seed=3",
                           "powersgd:shapes=6x2x2,rank=4,seed=9"}) {
    const auto d = desc_or_die(text);
    const auto m = test::normal_data(d.n, 12);
    auto out = roundtrip(d, m);
    const double norm = test::sum_sq(m);
    EXPECT_LT(dist_sq(m, out), 1e-10 * norm) << text;
  }
  // r' = min(5, 3, 7) = 3: 32 + 4 * 3 * (3 + 5) bytes.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("powersgd:shapes=3x5,rank=7")), 32u + 96u);
}

TEST(PowerSgd, RankOneMatrixIsExactAtRankOne) {
  // M = u v^T, u = [1, 2, -3, 0.5], v = [2, -1, 4]: any Q with v.Q != 0 gives P ∝ u, P^ = u/|u|,
  // Q = v |u|, output = u v^T.
  const std::vector<float> u = {1, 2, -3, 0.5f}, v = {2, -1, 4};
  std::vector<float> m;
  for (float a : u)
    for (float b : v) m.push_back(a * b);
  const auto d = desc_or_die("powersgd:shapes=4x3,rank=1,seed=5");
  auto out = roundtrip(d, m);
  for (std::size_t i = 0; i < m.size(); ++i) EXPECT_NEAR(out[i], m[i], 2e-6 * 12) << i;
}

TEST(PowerSgd, WarmStartConvergesToTheBestRankOneApproximation) {
  const auto d = desc_or_die("powersgd:shapes=8x6,rank=1,seed=1");
  const auto m = test::normal_data(48, 31);
  // Best rank-1 error = ||M||^2 - sigma_1^2; sigma_1^2 by a long power iteration on M^T M.
  std::vector<double> x(6, 1.0);
  double sigma2 = 0.0;
  for (int it = 0; it < 5000; ++it) {
    std::vector<double> mx(8, 0.0), y(6, 0.0);
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 6; ++j) mx[i] += m[i * 6 + j] * x[j];
    for (int j = 0; j < 6; ++j)
      for (int i = 0; i < 8; ++i) y[j] += m[i * 6 + j] * mx[i];
    double nrm = 0.0, xy = 0.0, xx = 0.0;
    for (int j = 0; j < 6; ++j) {
      nrm += y[j] * y[j];
      xy += x[j] * y[j];
      xx += x[j] * x[j];
    }
    sigma2 = xy / xx;
    for (int j = 0; j < 6; ++j) x[j] = y[j] / std::sqrt(nrm);
  }
  const double best = test::sum_sq(m) - sigma2;
  ref::PowerSgdState state;
  std::vector<double> errs;
  for (std::uint32_t step = 0; step < 60; ++step) {
    auto out = roundtrip(d, m, with_state(&state, step));
    errs.push_back(dist_sq(m, out));
  }
  for (std::size_t t = 1; t < errs.size(); ++t)
    EXPECT_LE(errs[t], errs[t - 1] * (1 + 1e-5) + 1e-9) << "call " << t;  // power iteration
  EXPECT_GT(errs[0], best * (1 + 1e-3));  // the first call is not already optimal
  EXPECT_NEAR(errs.back(), best, 1e-4 * test::sum_sq(m));
  // Without warm start every call starts afresh and stays at the one-step quality.
  ref::PowerSgdState unused;
  auto cold = desc_or_die("powersgd:shapes=8x6,rank=1,seed=1,warm_start=0");
  auto out = roundtrip(cold, m, with_state(&unused, 59));
  EXPECT_TRUE(unused.q.empty());  // warm_start=0 never touches the state
  EXPECT_GT(dist_sq(m, out), errs.back());
}

TEST(PowerSgd, ContractionAndSharedInitialQ) {
  const auto d = desc_or_die("powersgd:shapes=30x20/16x4x3,rank=2,seed=77");
  const auto m = test::normal_data(d.n, 2);
  std::vector<std::uint8_t> p0;
  auto out = roundtrip(d, m, {}, &p0);
  // P^ has orthonormal columns, so the output is a projection: ||M - out||^2 <= ||M||^2.
  EXPECT_LT(dist_sq(m, out), test::sum_sq(m));
  EXPECT_NEAR(dist_sq(m, out), test::sum_sq(m) - test::sum_sq(out), 1e-4 * test::sum_sq(m));
  for (std::uint32_t rank = 1; rank < 4; ++rank) {
    ref::CompressContext ctx;
    ctx.rank = rank;
    EXPECT_EQ(test::compress_ok(d, m, ctx), p0) << "rank " << rank;  // the initial Q is shared
  }
  ref::CompressContext later;
  later.step = 1;
  auto p1 = test::compress_ok(d, m, later);
  ASSERT_GE(p0.size(), 32u);
  ASSERT_EQ(p1.size(), p0.size());
  EXPECT_FALSE(std::equal(p1.begin() + 32, p1.end(), p0.begin() + 32));  // fresh Q per step
}

TEST(PowerSgd, InitialQFollowsTheDocumentedKeying) {
  std::vector<float> q(5 * 2);
  ASSERT_TRUE(ref::powersgd_initial_q(42, 7, 3, 1, 5, 2, q).ok());
  const RngStream rng(42, RngPurpose::kPowerSgdInit, 7, 3, kSharedRank);
  for (std::uint64_t row = 0; row < 5; ++row)
    for (std::uint64_t col = 0; col < 2; ++col)
      EXPECT_EQ(q[row * 2 + col], static_cast<float>(rng.normal((1ull << 32) | (row * 2 + col))));
  EXPECT_EQ(ref::powersgd_initial_q(42, 7, 3, 1, 5, 2, Span<float>(q.data(), 9)).code(),
            StatusCode::kInvalidArgument);
}

TEST(PowerSgd, OrthogonalizeByHand) {
  // p (2x2, row major) = [[3, 1], [4, 2]], eps = 0: col0 = [3,4]/5 = [0.6, 0.8];
  // col1 = [1,2] - (0.6 + 1.6) [0.6, 0.8] = [-0.32, 0.24], norm 0.4 -> [-0.8, 0.6].
  std::vector<float> p = {3, 1, 4, 2};
  ASSERT_TRUE(ref::orthogonalize(p, 2, 2, 0.0).ok());
  EXPECT_NEAR(p[0], 0.6, 1e-7);
  EXPECT_NEAR(p[2], 0.8, 1e-7);
  EXPECT_NEAR(p[1], -0.8, 1e-6);
  EXPECT_NEAR(p[3], 0.6, 1e-6);
  // A random 40x5 matrix becomes orthonormal: P^T P = I.
  auto r = test::normal_data(200, 3);
  ASSERT_TRUE(ref::orthogonalize(r, 40, 5, 1e-8).ok());
  for (int a = 0; a < 5; ++a)
    for (int b = 0; b < 5; ++b) {
      double dot = 0.0;
      for (int i = 0; i < 40; ++i) dot += double(r[i * 5 + a]) * r[i * 5 + b];
      EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-6) << a << "," << b;
    }
  // eps matters for tiny columns: [3e-8, 4e-8] / (5e-8 + 1e-8) = [0.5, 0.666667].
  std::vector<float> tiny = {3e-8f, 4e-8f};
  ASSERT_TRUE(ref::orthogonalize(tiny, 2, 1, 1e-8).ok());
  EXPECT_NEAR(tiny[0], 0.5, 1e-6);
  EXPECT_NEAR(tiny[1], 4.0 / 6.0, 1e-6);
  // Zero columns stay zero with eps > 0 and with eps = 0 (no 0/0).
  for (double eps : {1e-8, 0.0}) {
    std::vector<float> z(6, 0.0f);
    ASSERT_TRUE(ref::orthogonalize(z, 3, 2, eps).ok());
    for (float x : z) EXPECT_EQ(float_bits(x), 0u);
  }
  EXPECT_EQ(ref::orthogonalize(p, 3, 2, 0.0).code(), StatusCode::kInvalidArgument);
  // The products check their sizes too.
  std::vector<float> a(6), b(4), c(3);
  EXPECT_EQ(ref::matmul_mq(a, 2, 3, b, 1, c).code(), StatusCode::kInvalidArgument);
}

TEST(PowerSgd, ZeroMatrixGivesZeros) {
  for (const char* text : {"powersgd:shapes=4x3,rank=2", "powersgd:shapes=4x3,rank=2,eps=0"}) {
    const auto d = desc_or_die(text);
    ref::PowerSgdState state;
    auto out = roundtrip(d, std::vector<float>(12, 0.0f), with_state(&state));
    for (float x : out) EXPECT_EQ(x, 0.0f) << text;  // and not NaN
    for (float x : state.q[0]) EXPECT_EQ(x, 0.0f) << text;
  }
}

TEST(PowerSgd, VectorSegmentsAreSentDense) {
  // shapes 4x3 / 5 / 2x2 at rank 2: body = P^ 4*2 + Q 3*2, the 5 values, P^ 2*2 + Q 2*2
  // = 27 floats; count = 3 segments; the vector lies at float offset 14.
  const auto d = desc_or_die("powersgd:shapes=4x3/5/2x2,rank=2,seed=2");
  const auto in = test::normal_data(21, 6);
  std::vector<std::uint8_t> p;
  auto out = roundtrip(d, in, {}, &p);
  ASSERT_EQ(p.size(), 32u + 4 * 27);
  EXPECT_EQ(test::count_of(p), 3u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(load_u32(p.data() + 32 + 4 * (14 + i)), float_bits(in[12 + i]));
    EXPECT_EQ(out[12 + i], in[12 + i]);
  }
  // 2x2 at rank 2 is full rank (E10): reproduced up to rounding.
  for (int i = 17; i < 21; ++i) EXPECT_NEAR(out[i], in[i], 1e-5);
  // The state gets one entry per segment; the vector's stays empty.
  ref::PowerSgdState state;
  roundtrip(d, in, with_state(&state));
  ASSERT_EQ(state.q.size(), 3u);
  EXPECT_EQ(state.q[0].size(), 6u);
  EXPECT_TRUE(state.q[1].empty());
  EXPECT_EQ(state.q[2].size(), 4u);
}

// The state's bit patterns (NaN != NaN, so values cannot be compared with ==).
std::vector<std::vector<std::uint32_t>> bits_of(const ref::PowerSgdState& state) {
  std::vector<std::vector<std::uint32_t>> bits;
  for (const auto& q : state.q) {
    bits.emplace_back();
    for (float x : q) bits.back().push_back(float_bits(x));
  }
  return bits;
}

TEST(PowerSgd, StateIsUntouchedOnError) {
  const auto d = desc_or_die("powersgd:shapes=4x3/5,rank=2");
  const auto in = test::normal_data(17, 1);
  auto expect_rejected = [&](ref::PowerSgdState state, std::vector<float> input, StatusCode code,
                             const char* what) {
    const ref::PowerSgdState before = state;
    std::vector<std::uint8_t> p = {9, 9};
    Status s = ref::compress(d, with_state(&state), input, p);
    EXPECT_EQ(s.code(), code) << what << ": " << s.to_string();
    if (code == StatusCode::kInvalidArgument) {  // the message names the state as the problem
      EXPECT_NE(s.message().find("warm-start"), std::string::npos) << s.message();
    }
    EXPECT_EQ(bits_of(state), bits_of(before)) << what;  // bitwise: NaN entries included
    EXPECT_EQ(p, (std::vector<std::uint8_t>{9, 9})) << what;
  };
  ref::PowerSgdState wrong_count;
  wrong_count.q = {{}, {}, {}};
  expect_rejected(wrong_count, in, StatusCode::kInvalidArgument, "3 entries for 2 segments");
  ref::PowerSgdState wrong_size;
  wrong_size.q = {std::vector<float>(5, 1.0f), {}};
  expect_rejected(wrong_size, in, StatusCode::kInvalidArgument, "Q of 5 entries, want 3 x 2");
  ref::PowerSgdState vector_q;
  vector_q.q = {std::vector<float>(6, 1.0f), {1.0f}};
  expect_rejected(vector_q, in, StatusCode::kInvalidArgument, "Q for a vector segment");
  ref::PowerSgdState nan_q;
  nan_q.q = {std::vector<float>(6, std::nanf("")), {}};
  expect_rejected(nan_q, in, StatusCode::kNonFinite, "NaN in the state");
  ref::PowerSgdState good;
  good.q = {std::vector<float>(6, 0.5f), {}};
  auto bad_in = in;
  bad_in[3] = INFINITY;
  expect_rejected(good, bad_in, StatusCode::kNonFinite, "Inf in the input");
  // f32 overflow of Q = M^T P^ with finite input is refused too.
  std::vector<float> huge(17, 3e38f);
  expect_rejected(good, huge, StatusCode::kNonFinite, "overflow");
}

TEST(PowerSgd, NonFinitePropagate) {
  const auto d = desc_or_die("powersgd:shapes=3x2/2,rank=1,nonfinite=propagate");
  std::vector<float> in = {1, 2, std::nanf(""), 4, 5, 6, 7, INFINITY};
  auto out = roundtrip(d, in);
  EXPECT_TRUE(std::isnan(out[0]));  // NaN spreads through P and Q
  EXPECT_EQ(out[6], 7.0f);
  EXPECT_EQ(out[7], INFINITY);
}

TEST(PowerSgd, PayloadSizeFormula) {
  // 32 + 4 * sum r'(n + m) + 4 * sum(vector sizes).
  struct Case {
    const char* text;
    std::uint64_t bytes;
  };
  const Case cases[] = {
      {"powersgd:n=0", 32},
      {"powersgd:n=1", 36},
      {"powersgd:n=4097", 32 + 4 * 4097},
      {"powersgd:shapes=64x27x3x3,rank=4", 32 + 4 * 4 * (64 + 243)},
      {"powersgd:shapes=1x5,rank=3", 32 + 4 * 1 * (1 + 5)},  // r' = min(1, 5, 3) = 1
      {"powersgd:shapes=10x10/10/3x7,rank=2", 32 + 4 * (2 * 20 + 10 + 2 * 10)},
      {"powersgd:shapes=100x1,rank=1", 32 + 4 * 101},
  };
  for (const Case& c : cases) {
    const auto d = desc_or_die(c.text);
    EXPECT_EQ(ref::payload_bytes(d), c.bytes) << c.text;
    std::vector<std::uint8_t> p;
    auto in = test::normal_data(d.n, 4);
    auto out = roundtrip(d, in, {}, &p);
    EXPECT_EQ(p.size(), c.bytes) << c.text;
  }
  // Edge sizes with the default layout (one 1-D tensor): dense, exact round trip.
  for (std::uint64_t n : test::edge_sizes()) {
    const auto d = desc_or_die("powersgd:n=" + std::to_string(n));
    const auto in = test::normal_data(n, 5);
    std::vector<std::uint8_t> p;
    auto out = roundtrip(d, in, {}, &p);
    ASSERT_EQ(p.size(), 32 + 4 * n);
    EXPECT_EQ(test::count_of(p), n == 0 ? 0u : 1u);
    EXPECT_EQ(out, in) << "n = " << n;
  }
  // A large matrix stays fast: 1024 x 1024 at rank 4 (E10 is not expected; just sizes/finite).
  const auto big = desc_or_die("powersgd:shapes=1024x1024,rank=4");
  auto in = test::normal_data(1u << 20, 9);
  std::vector<std::uint8_t> p;
  auto out = roundtrip(big, in, {}, &p);
  EXPECT_EQ(p.size(), 32u + 4u * 4 * 2048);
  EXPECT_LT(dist_sq(in, out), test::sum_sq(in));
}

TEST(PowerSgd, CorruptPayloadsAreRejected) {
  const auto d = desc_or_die("powersgd:shapes=4x3/5,rank=2,seed=8");
  const auto in = test::normal_data(17, 3);
  const auto good = test::compress_ok(d, in);
  ASSERT_EQ(good.size(), 32u + 4u * (2 * 7 + 5));
  test::expect_truncations_rejected(d, good);
  std::vector<float> out(17);
  auto p = good;
  store_u32(p.data() + 24, 1);
  test::expect_corrupt(d, p, "", {}, "count 1 for 2 segments");
  p = good;
  store_u32(p.data() + 24, 17);
  test::expect_corrupt(d, p, "", {}, "count n");
  p = good;
  p[7] = kFlagDense;
  test::expect_corrupt(d, p, "", {}, "dense flag");
  p = good;
  store_f32(p.data() + 32, 1.5f);  // P^[0]: a unit column has no entry above 1
  test::expect_corrupt(d, p, "", {}, "|P^| > 1");
  p = good;
  store_f32(p.data() + 32 + 4 * 8, std::nanf(""));  // Q[0]
  test::expect_corrupt(d, p, "", {}, "NaN in Q");
  p = good;
  store_f32(p.data() + 32 + 4 * 14, -INFINITY);  // the vector's first value
  test::expect_corrupt(d, p, "", {}, "Inf in a vector value");
  // Decoding is stateless: a valid payload decodes the same with or without a state.
  ref::PowerSgdState state;
  EXPECT_TRUE(ref::decompress(d, with_state(&state), good, Span<float>(out)).ok());
  EXPECT_TRUE(state.q.empty());
}

}  // namespace
}  // namespace gradcomp
