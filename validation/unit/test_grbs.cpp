// grbs (CSER globally-randomized blockwise sparsifier, algorithms.md §4.9): known answers written
// from the definition, the shared-randomness and density properties, the Python-round tie rule,
// allreduce linearity, the payload formula and every corrupted-payload case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

constexpr std::uint8_t kGrbsId = 12;

// The documented shared stream of grbs (docs/compressors/grbs.md).
RngStream grbs_stream(std::uint64_t seed, std::uint32_t step) {
  return RngStream(seed, RngPurpose::kGrbsBlocks, step, 0, kSharedRank);
}

TEST(Grbs, KnownAnswerRowBlocksOfAMatrix) {
  // 4x3 tensor, rho0 = 0.5 -> k0 = round(2.0) = 2 rows; rho1 = 1 -> k1 = 3 columns: two row
  // blocks, b0 = uniform_below(ceil(4/2) = 2) from (element 0, draw 1) of the shared stream.
  const auto d = desc_or_die("grbs:shapes=4x3,rho0=0.5,rho1=1,seed=5");
  std::vector<float> in(12);
  for (int i = 0; i < 12; ++i) in[i] = float(i + 1);  // row r holds 3r+1, 3r+2, 3r+3
  const float want_vals[2][6] = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}};
  bool seen[2] = {false, false};
  for (std::uint32_t step = 0; step < 16; ++step) {
    const std::uint64_t b0 = grbs_stream(5, step).uniform_below(2, 0, 1);
    ASSERT_LT(b0, 2u);
    seen[b0] = true;
    auto want = test::expected_header_at(kGrbsId, 12, step, 0, 6, 24);  // 6 values, 24 body bytes
    for (float v : want_vals[b0]) test::append_f32(want, v);
    EXPECT_EQ(test::compress_ok(d, in, test::at_step(step)), want) << "step " << step;
    auto out = roundtrip(d, in, test::at_step(step));
    for (int i = 0; i < 12; ++i)
      EXPECT_EQ(out[i], (i / 6 == int(b0)) ? in[i] : 0.0f) << "step " << step << " i " << i;
  }
  EXPECT_TRUE(seen[0] && seen[1]);
}

TEST(Grbs, KnownAnswerColumnBlocksAndTrailingAxes) {
  // 2x4x2 tensor, rho0 = 1 (all rows), rho1 = 0.5 -> k1 = 2 columns, trailing axis kept whole.
  // Element (r, c, i) is at 8r + 2c + i; block b1 = uniform_below(2) from draw 2.
  const auto d = desc_or_die("grbs:shapes=2x4x2,rho0=1,rho1=0.5,seed=9");
  std::vector<float> in(16);
  for (int i = 0; i < 16; ++i) in[i] = float(100 + i);
  // b1 = 0: columns 0,1 -> flat 0..3 and 8..11; b1 = 1: columns 2,3 -> 4..7 and 12..15.
  const float want_vals[2][8] = {{100, 101, 102, 103, 108, 109, 110, 111},
                                 {104, 105, 106, 107, 112, 113, 114, 115}};
  bool seen[2] = {false, false};
  for (std::uint32_t step = 0; step < 16; ++step) {
    const std::uint64_t b1 = grbs_stream(9, step).uniform_below(2, 0, 2);
    EXPECT_EQ(grbs_stream(9, step).uniform_below(1, 0, 1), 0u);  // one row block
    seen[b1] = true;
    auto want = test::expected_header_at(kGrbsId, 16, step, 0, 8, 32);
    for (float v : want_vals[b1]) test::append_f32(want, v);
    EXPECT_EQ(test::compress_ok(d, in, test::at_step(step)), want) << "step " << step;
  }
  EXPECT_TRUE(seen[0] && seen[1]);
}

TEST(Grbs, ShorterLastBlockSendsFewerValues) {
  // 1-D n = 5, rho0 = 0.4 -> k0 = round(2.0) = 2: blocks [0,2), [2,4), [4,5) (last shorter);
  // b0 = uniform_below(3). grbs is variable-size: the body is exactly 4 * count bytes, and
  // payload_bytes() = 32 + 4 * 2 is the largest payload (a full block of 2 values).
  const auto d = desc_or_die("grbs:n=5,rho0=0.4,seed=3");
  const std::vector<float> in = {10, 20, 30, 40, 50};
  // The body bytes of each block, little-endian f32 written out by hand:
  // 10 = 0x41200000, 20 = 0x41A00000, 30 = 0x41F00000, 40 = 0x42200000, 50 = 0x42480000.
  const std::vector<std::vector<std::uint8_t>> want_body = {
      {0x00, 0x00, 0x20, 0x41, 0x00, 0x00, 0xA0, 0x41},
      {0x00, 0x00, 0xF0, 0x41, 0x00, 0x00, 0x20, 0x42},
      {0x00, 0x00, 0x48, 0x42}};
  bool seen_full = false, seen_last = false;
  EXPECT_EQ(ref::payload_bytes(d), 32u + 8u);
  for (std::uint32_t step = 0; step < 24; ++step) {
    const std::uint64_t b0 = grbs_stream(3, step).uniform_below(3, 0, 1);
    const std::uint32_t count = b0 == 2 ? 1 : 2;
    auto want = test::expected_header_at(kGrbsId, 5, step, 0, count, 4 * count);
    want.insert(want.end(), want_body[b0].begin(), want_body[b0].end());
    const auto p = test::compress_ok(d, in, test::at_step(step));
    EXPECT_EQ(p, want) << "step " << step;
    if (b0 == 2) {
      EXPECT_EQ(p.size(), 32u + 4u) << "step " << step;  // no padding after the single value
      EXPECT_LT(p.size(), ref::payload_bytes(d)) << "step " << step;
    } else {
      EXPECT_EQ(p.size(), ref::payload_bytes(d)) << "step " << step;  // the largest selection
    }
    auto out = roundtrip(d, in, test::at_step(step));
    for (std::size_t i = 0; i < 5; ++i)
      EXPECT_EQ(out[i], i / 2 == b0 ? in[i] : 0.0f) << "step " << step << " i " << i;
    seen_last |= b0 == 2;
    seen_full |= b0 != 2;
  }
  EXPECT_TRUE(seen_last && seen_full);
}

TEST(Grbs, PayloadBytesIsTheLargestSelection) {
  // Two tensors, 5x3 (k0 = round(2.0) = 2, k1 = 3: row blocks of 2, 2, 1 -> 6, 6 or 3 values)
  // and 1-D 7 (k0 = round(2.8) = 3: 3, 3 or 1 values), rho_layer = 0.5: the count varies with
  // the step (a tensor skipped, shorter last blocks); payload_bytes = 32 + 4 * (6 + 3) is an
  // upper bound, reached when both tensors are selected with full blocks.
  const auto d = desc_or_die("grbs:shapes=5x3/7,rho_layer=0.5,rho0=0.4,rho1=1,seed=2");
  EXPECT_EQ(ref::payload_bytes(d), 32u + 36u);
  const auto in = test::normal_data(d.n, 1);
  bool reached = false;
  std::map<std::uint32_t, int> counts;
  for (std::uint32_t step = 0; step < 200; ++step) {
    const auto p = test::compress_ok(d, in, test::at_step(step));
    ASSERT_GE(p.size(), 32u);
    EXPECT_EQ(p.size(), 32u + 4u * test::count_of(p)) << "step " << step;
    EXPECT_LE(p.size(), ref::payload_bytes(d)) << "step " << step;
    reached |= p.size() == ref::payload_bytes(d);
    ++counts[test::count_of(p)];
  }
  EXPECT_TRUE(reached);
  EXPECT_GE(counts.size(), 4u);  // 0, 1, 3, 4, 6, 7, 9 are all possible
}

// Counts of each payload count value over steps (the block length reveals k0).
std::map<std::uint32_t, int> counts_over_steps(const CompressorDesc& d, int steps) {
  std::map<std::uint32_t, int> seen;
  const std::vector<float> in = test::normal_data(d.n, 4);
  for (int s = 0; s < steps; ++s) {
    auto p = test::compress_ok(d, in, test::at_step(std::uint32_t(s)));
    ++seen[test::count_of(p)];
  }
  return seen;
}

TEST(Grbs, PythonRoundTiesHalfEvenOrHalfUp) {
  // d0 * rho0 = 10 * 0.25 = 2.5 (exact): Python round -> 2 (five equal blocks, always 2 values);
  // half_up -> 3 (blocks 3,3,3,1).
  auto even = desc_or_die("grbs:n=10,rho0=0.25,round=half_even");
  auto up = desc_or_die("grbs:n=10,rho0=0.25,round=half_up");
  EXPECT_EQ(ref::payload_bytes(even), 32u + 4 * 2);
  EXPECT_EQ(ref::payload_bytes(up), 32u + 4 * 3);
  EXPECT_EQ(counts_over_steps(even, 40), (std::map<std::uint32_t, int>{{2, 40}}));
  auto up_counts = counts_over_steps(up, 40);
  EXPECT_EQ(up_counts.size(), 2u);
  EXPECT_GT(up_counts[3], 0);
  EXPECT_GT(up_counts[1], 0);
  // 14 * 0.25 = 3.5 -> 4 under both rules (4 is even); 6 * 0.25 = 1.5 -> 2 under both.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:n=14,rho0=0.25,round=half_even")), 32u + 16);
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:n=14,rho0=0.25,round=half_up")), 32u + 16);
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:n=6,rho0=0.25,round=half_even")), 32u + 8);
  // 2 * 0.25 = 0.5 -> round 0 (half_even), clamped to max(1, 0) = 1; half_up -> 1.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:n=2,rho0=0.25,round=half_even")), 32u + 4);
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:n=2,rho0=0.25,round=half_up")), 32u + 4);
  // Columns follow the same rule: 10x6, rho1 = 0.25 -> 1.5 -> k1 = 2; rho0 = 0.25 -> k0 = 2 or 3.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:shapes=10x6,rho0=0.25,rho1=0.25")), 32u + 16);
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:shapes=10x6,rho0=0.25,rho1=0.25,round=half_up")),
            32u + 24);
}

TEST(Grbs, BlocksAreSharedAcrossRanks) {
  const auto d = desc_or_die("grbs:shapes=40x10/77/6x5x3,rho_layer=0.6,rho0=0.2,rho1=0.5,seed=11");
  const auto in = test::normal_data(d.n, 2);
  std::vector<std::vector<std::uint8_t>> by_step;
  for (std::uint32_t step = 0; step < 8; ++step) {
    const auto p0 = test::compress_ok(d, in, test::at_step(step, 0));
    ASSERT_GE(p0.size(), 32u);
    for (std::uint32_t rank = 1; rank < 4; ++rank)
      EXPECT_EQ(test::compress_ok(d, in, test::at_step(step, rank)), p0) << "rank " << rank;
    // A receiver of another rank decodes it with its own context.
    std::vector<float> out(d.n);
    EXPECT_TRUE(ref::decompress(d, test::at_step(step, 3), p0, Span<float>(out)).ok());
    by_step.push_back(p0);
  }
  // ... while the blocks do change from step to step (bodies differ).
  int distinct = 0;
  for (std::size_t s = 1; s < by_step.size(); ++s)
    distinct += !std::equal(by_step[s].begin() + 32, by_step[s].end(), by_step[0].begin() + 32,
                            by_step[0].end());
  EXPECT_GE(distinct, 5);
}

// Selection count of each of the 4 x 2 blocks of a 64x32x3 tensor (k0 = 16, k1 = 16) over
// `steps` steps; `biased` draws the row block from 3 of the 4 blocks (a deliberately wrong rule).
std::vector<std::uint64_t> block_hits(const CompressorDesc& d, int steps, bool biased,
                                      double* mean_fraction) {
  std::vector<std::uint64_t> hits(8, 0);
  std::vector<float> in(d.n);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = float(i + 1);
  double fraction = 0.0;
  for (int s = 0; s < steps; ++s) {
    if (biased) {
      const RngStream rng = grbs_stream(d.seed, std::uint32_t(s));
      if (rng.uniform_double(0, 0) <= d.rho_layer) {
        const std::uint64_t b0 = rng.uniform_below(3, 0, 1), b1 = rng.uniform_below(2, 0, 2);
        ++hits[b0 * 2 + b1];
        fraction += 1.0 / 8.0;
      }
      continue;
    }
    auto out = roundtrip(d, in, test::at_step(std::uint32_t(s)));
    std::uint64_t nonzero = 0, first = d.n;
    for (std::uint64_t i = 0; i < d.n; ++i)
      if (out[i] != 0.0f) {
        ++nonzero;
        first = std::min(first, i);
        EXPECT_EQ(out[i], in[i]);
      }
    fraction += double(nonzero) / double(d.n);
    if (nonzero == 0) continue;
    EXPECT_EQ(nonzero, 16u * 16u * 3u);  // one whole block
    const std::uint64_t row = first / (32 * 3), col = (first / 3) % 32;
    ++hits[(row / 16) * 2 + col / 16];
  }
  *mean_fraction = fraction / steps;
  return hits;
}

TEST(Grbs, ExpectedDensityIsRhoLayerTimesRho0TimesRho1) {
  // rho_layer = 0.5, rho0 = 0.25, rho1 = 0.5: each of the 8 blocks is sent with probability
  // 0.5 / 8 = 1/16 per step and the mean selected fraction is 0.5 * 0.25 * 0.5 = 1/16.
  const auto d = desc_or_die("grbs:shapes=64x32x3,rho_layer=0.5,rho0=0.25,rho1=0.5,seed=21");
  const int steps = 3000;
  const double zmax = test::bonferroni_z(1e-6, 8);
  double fraction = 0.0;
  auto hits = block_hits(d, steps, false, &fraction);
  EXPECT_LT(test::max_binomial_z(hits, steps, 1.0 / 16.0), zmax);
  // The fraction is 1/8 with probability 1/2 and 0 otherwise: sd of the mean = 1/16 / sqrt(S).
  EXPECT_NEAR(fraction, 0.5 * 0.25 * 0.5, 5.0 * (1.0 / 16.0) / std::sqrt(double(steps)));
  // Negative control: the same test flags a rule that never picks the last row block.
  double biased_fraction = 0.0;
  auto biased = block_hits(d, steps, true, &biased_fraction);
  EXPECT_GT(test::max_binomial_z(biased, steps, 1.0 / 16.0), zmax);
}

TEST(Grbs, LinearSoPayloadsCanBeAllreduced) {
  const auto d = desc_or_die("grbs:shapes=33x7/100/5x4x3,rho_layer=0.7,rho0=0.3,rho1=0.5,seed=4");
  const auto a = test::normal_data(d.n, 5), b = test::normal_data(d.n, 6);
  for (std::uint32_t step = 0; step < 10; ++step)
    ASSERT_NO_FATAL_FAILURE(test::expect_linear_payloads(d, a, b, step)) << "step " << step;
}

TEST(Grbs, PayloadSizeFormulaAndRoundTripAtEdgeSizes) {
  // 1-D, rho0 = 1/32 (default): k0 = max(1, round(n / 32)), payload = 32 + 4 * k0.
  //   n = 1: round(0.03125) = 0 -> 1;  31: round(0.96875) = 1;  32: 1;  33: round(1.03125) = 1;
  //   1023: round(31.96875) = 32;  4097: round(128.03125) = 128;  2^20+3: round(32768.09375) =
  //   32768.
  const std::map<std::uint64_t, std::uint64_t> k0 = {
      {1, 1}, {31, 1}, {32, 1}, {33, 1}, {1023, 32}, {4097, 128}, {(1u << 20) + 3, 32768}};
  for (std::uint64_t n : test::edge_sizes()) {
    const auto d = desc_or_die("grbs:seed=8,n=" + std::to_string(n));
    const std::uint64_t k = n == 0 ? 0 : k0.at(n);
    EXPECT_EQ(ref::payload_bytes(d), 32 + 4 * k) << "n = " << n;
    const auto in = test::normal_data(n, 3);
    for (std::uint32_t step : {0u, 7u}) {
      std::vector<std::uint8_t> p;
      auto out = roundtrip(d, in, test::at_step(step), &p);
      ASSERT_LE(p.size(), ref::payload_bytes(d)) << "n = " << n;
      if (n == 0) {
        EXPECT_EQ(p.size(), 32u);
        EXPECT_EQ(test::count_of(p), 0u);
        continue;
      }
      // The block from the documented stream: b0 = uniform_below(ceil(n / k0)) at draw 1.
      const std::uint64_t b0 = grbs_stream(8, step).uniform_below((n + k - 1) / k, 0, 1);
      const std::uint64_t lo = b0 * k, hi = std::min(lo + k, n);
      EXPECT_EQ(test::count_of(p), hi - lo) << "n = " << n;
      EXPECT_EQ(p.size(), 32 + 4 * (hi - lo)) << "n = " << n;  // exactly count values
      for (std::uint64_t i = 0; i < n; ++i)
        ASSERT_EQ(out[i], (i >= lo && i < hi) ? in[i] : 0.0f) << "n = " << n << " i = " << i;
    }
  }
  // Several tensors: 10x6 (k0 = round(2.5) = 2, k1 = round(1.5) = 2 -> 4), 7 (k0 = round(1.75)
  // = 2), 3x4x5 (k0 = round(0.75) = 1, k1 = round(1.0) = 1, inner 5 -> 5): 32 + 4 * 11 = 76.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("grbs:shapes=10x6/7/3x4x5,rho0=0.25,rho1=0.25")), 76u);
}

TEST(Grbs, WholeTensorsAreSentDenseWithTheFlag) {
  // rho_layer = rho0 = rho1 = 1: every tensor is one block: flag dense, count = n, body = input.
  const auto d = desc_or_die("grbs:shapes=3x4/5,rho0=1,rho1=1");
  const auto in = test::normal_data(17, 7);
  std::vector<std::uint8_t> p;
  auto out = roundtrip(d, in, {}, &p);
  auto want = test::expected_header_at(kGrbsId, 17, 0, 0, 17, 68, kFlagDense);
  for (float v : in) test::append_f32(want, v);
  EXPECT_EQ(p, want);
  EXPECT_EQ(out, in);
  // n = 1 with the default rho0: k0 = max(1, round(1/32)) = 1 = d0: dense as well.
  const auto one = desc_or_die("grbs:n=1");
  auto p1 = test::compress_ok(one, {-2.5f});
  EXPECT_EQ(test::flags_of(p1), kFlagDense);
  EXPECT_EQ(roundtrip(one, {-2.5f}), std::vector<float>{-2.5f});
  // rho_layer < 1 may skip the tensor, so it is not dense.
  auto p2 = test::compress_ok(desc_or_die("grbs:shapes=3x4/5,rho0=1,rho1=1,rho_layer=0.99"), in);
  EXPECT_EQ(test::flags_of(p2), 0);
}

TEST(Grbs, RhoLayerZeroSendsNothingAndZerosStayZero) {
  const auto none = desc_or_die("grbs:shapes=8x8/9,rho_layer=0");
  const auto in = test::normal_data(73, 9);
  for (std::uint32_t step = 0; step < 5; ++step) {
    std::vector<std::uint8_t> p;
    auto out = roundtrip(none, in, test::at_step(step), &p);
    EXPECT_EQ(test::count_of(p), 0u);
    EXPECT_EQ(out, std::vector<float>(73, 0.0f));
  }
  const auto d = desc_or_die("grbs:shapes=8x8/9,rho0=0.5,rho1=0.5");
  auto out = roundtrip(d, std::vector<float>(73, 0.0f));
  for (float v : out) EXPECT_EQ(float_bits(v), 0u);  // +0, no NaN
}

TEST(Grbs, NonFiniteInputPolicy) {
  std::vector<float> in = {1.0f, std::nanf(""), 3.0f, -INFINITY};
  std::vector<std::uint8_t> p = {0xAB};
  EXPECT_EQ(ref::compress(desc_or_die("grbs:n=4,rho0=1"), {}, in, p).code(),
            StatusCode::kNonFinite);
  EXPECT_EQ(p, std::vector<std::uint8_t>{0xAB});  // untouched on error
  auto out = roundtrip(desc_or_die("grbs:n=4,rho0=1,nonfinite=propagate"), in);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(out[3], -INFINITY);
}

TEST(Grbs, CorruptPayloadsAreRejected) {
  const auto d = desc_or_die("grbs:n=5,rho0=0.4,seed=3");
  const std::vector<float> in = {10, 20, 30, 40, 50};
  // A step where the shorter last block is selected (count 1, body 4 bytes).
  std::uint32_t step = 0;
  while (grbs_stream(3, step).uniform_below(3, 0, 1) != 2) ++step;
  const auto ctx = test::at_step(step);
  const auto good = test::compress_ok(d, in, ctx);
  ASSERT_EQ(good.size(), 36u);
  test::expect_truncations_rejected(d, good, ctx);
  std::vector<float> out(5, 0.0f);
  auto p = good;
  store_u32(p.data() + 24, 2);  // count disagrees with the shared stream
  test::expect_corrupt(d, p, "", ctx, "count + 1");
  p = good;
  store_u32(p.data() + 24, 0);
  test::expect_corrupt(d, p, "", ctx, "count 0");
  p = good;
  p[7] = kFlagDense;
  test::expect_corrupt(d, p, "", ctx, "dense flag");
  p = good;
  store_f32(p.data() + 32, std::nanf(""));
  test::expect_corrupt(d, p, "", ctx, "NaN value under nonfinite=error");
  // Extra trailing bytes with a consistent header (body_bytes updated): the body must be exactly
  // 4 * count bytes, so neither a zero-padded body (the largest selection, 8 bytes) nor one
  // stray byte is accepted.
  for (std::uint32_t extra : {1u, 4u}) {
    p = good;
    p.resize(good.size() + extra, 0);
    store_u32(p.data() + 28, 4 + extra);
    test::expect_corrupt(d, p, "", ctx,
                         extra == 4 ? "zero-padded to the largest selection" : "one trailing byte");
  }
  // A full-size body with count 2 is rejected too (the stream selects 1 value at this step).
  p = good;
  p.resize(40, 0);
  store_u32(p.data() + 24, 2);
  store_u32(p.data() + 28, 8);
  test::expect_corrupt(d, p, "", ctx, "count 2 with an 8-byte body");
  // A payload of another tensor_id or step is rejected by the header check.
  ref::CompressContext other = ctx;
  other.tensor_id = 1;
  EXPECT_EQ(ref::decompress(d, other, good, Span<float>(out)).code(), StatusCode::kCorruptPayload);
  // With propagate the same NaN value is accepted.
  const auto prop = desc_or_die("grbs:n=5,rho0=0.4,seed=3,nonfinite=propagate");
  p = test::compress_ok(prop, in, ctx);
  store_f32(p.data() + 32, std::nanf(""));
  EXPECT_TRUE(ref::decompress(prop, ctx, p, Span<float>(out)).ok());
}

}  // namespace
}  // namespace gradcomp
