// rbgs (random block per tensor segment, URSB wrap-around rule or aligned partition,
// algorithms.md §4.9): known answers including the wrap-around, shared randomness, coverage
// uniformity with a negative control, allreduce linearity, the payload formula and every
// corrupted-payload case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::roundtrip;

constexpr std::uint8_t kRbgsId = 13;

// The documented shared stream (docs/compressors/rbgs.md).
RngStream rbgs_stream(std::uint64_t seed, std::uint32_t step) {
  return RngStream(seed, RngPurpose::kRbgsBlocks, step, 0, kSharedRank);
}

TEST(Rbgs, KnownAnswerWrapAround) {
  // n = 10, density 0.3 -> k = floor(3) = 3; start s = uniform_below(10) (element 0, draw 0).
  // The block is [s, min(s+3, 10)) then [0, 3 - (10 - s)), written by hand for every s:
  const int block[10][3] = {{0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 6},
                            {5, 6, 7}, {6, 7, 8}, {7, 8, 9}, {8, 9, 0}, {9, 0, 1}};
  const auto d = desc_or_die("rbgs:n=10,density=0.3,seed=2");
  std::vector<float> in(10);
  for (int i = 0; i < 10; ++i) in[i] = float(i + 1) * 0.5f;
  bool wrapped[2] = {false, false};
  for (std::uint32_t step = 0; step < 120; ++step) {
    const std::uint64_t s = rbgs_stream(2, step).uniform_below(10, 0, 0);
    auto want = test::expected_header_at(kRbgsId, 10, step, 0, 3, 12);
    for (int j = 0; j < 3; ++j) test::append_f32(want, in[block[s][j]]);
    EXPECT_EQ(test::compress_ok(d, in, test::at_step(step)), want) << "step " << step << " s " << s;
    auto out = roundtrip(d, in, test::at_step(step));
    for (int i = 0; i < 10; ++i) {
      const bool in_block = i == block[s][0] || i == block[s][1] || i == block[s][2];
      EXPECT_EQ(out[i], in_block ? in[i] : 0.0f) << "step " << step << " i " << i;
    }
    if (s >= 8) wrapped[s - 8] = true;
  }
  EXPECT_TRUE(wrapped[0] && wrapped[1]);  // both wrap-around starts were exercised
}

TEST(Rbgs, KnownAnswerPartition) {
  // n = 10, density 0.3, align=partition: nb = ceil(1/0.3) = 4 blocks of bs = ceil(10/4) = 3:
  // [0,3) [3,6) [6,9) [9,10); b = uniform_below(4). The body is exactly the block's values:
  // 12 bytes for a full block, 4 for the last one; payload_bytes = 32 + 4 * bs = 44 is the
  // largest payload.
  const auto d = desc_or_die("rbgs:n=10,density=0.3,align=partition,seed=6");
  EXPECT_EQ(ref::payload_bytes(d), 32u + 12u);
  std::vector<float> in(10);
  for (int i = 0; i < 10; ++i) in[i] = float(-i - 1);
  const std::vector<std::vector<float>> vals = {{-1, -2, -3}, {-4, -5, -6}, {-7, -8, -9}, {-10}};
  bool seen_full = false, seen_last = false;
  for (std::uint32_t step = 0; step < 40; ++step) {
    const std::uint64_t b = rbgs_stream(6, step).uniform_below(4, 0, 0);
    const std::uint32_t count = std::uint32_t(vals[b].size());
    auto want = test::expected_header_at(kRbgsId, 10, step, 0, count, 4 * count);
    for (float v : vals[b]) test::append_f32(want, v);
    const auto p = test::compress_ok(d, in, test::at_step(step));
    EXPECT_EQ(p, want) << "step " << step;
    if (b == 3) {
      // Written out by hand: count 1, body_bytes 4, then -10 = 0xC1200000 little-endian, and
      // nothing after it.
      ASSERT_EQ(p.size(), 36u) << "step " << step;
      EXPECT_EQ(std::vector<std::uint8_t>(p.begin() + 24, p.end()),
                (std::vector<std::uint8_t>{1, 0, 0, 0, 4, 0, 0, 0, 0x00, 0x00, 0x20, 0xC1}))
          << "step " << step;
      EXPECT_LT(p.size(), ref::payload_bytes(d));
    } else {
      EXPECT_EQ(p.size(), ref::payload_bytes(d)) << "step " << step;  // the largest selection
    }
    seen_last |= b == 3;
    seen_full |= b != 3;
  }
  EXPECT_TRUE(seen_last && seen_full);
  // n = 5, density 0.3: nb = 4, bs = 2 -> only ceil(5/2) = 3 blocks exist; no step draws an
  // empty fourth block.
  const auto small = desc_or_die("rbgs:n=5,density=0.3,align=partition,seed=6");
  const std::vector<float> in5 = {1, 2, 3, 4, 5};
  for (std::uint32_t step = 0; step < 60; ++step) {
    const auto p = test::compress_ok(small, in5, test::at_step(step));
    const std::uint64_t b = rbgs_stream(6, step).uniform_below(3, 0, 0);
    EXPECT_EQ(test::count_of(p), b == 2 ? 1u : 2u) << "step " << step;
  }
}

TEST(Rbgs, FloorOfDensityTimesSize) {
  // k = max(1, floor(density * n_t)) per segment; the 1e-12 guard keeps 0.3 * 10 = 3.
  // shapes 10/3x7/1000 at density 0.25: floor(2.5) = 2, floor(5.25) = 5, floor(250) = 250.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("rbgs:shapes=10/3x7/1000,density=0.25")), 32u + 4 * 257);
  // density 0.01 on 50 elements: floor(0.5) = 0 -> 1.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("rbgs:n=50,density=0.01")), 32u + 4);
  EXPECT_EQ(ref::payload_bytes(desc_or_die("rbgs:n=10,density=0.3")), 32u + 12);
  EXPECT_EQ(ref::payload_bytes(desc_or_die("rbgs:n=100,density=0.07")), 32u + 28);
  // 0.29 * 100 = 28.999999999999996 in double: the guard gives the intended 29.
  EXPECT_EQ(ref::payload_bytes(desc_or_die("rbgs:n=100,density=0.29")), 32u + 4 * 29);
  // align=partition: 1 / 0.02040816326530612 (= repr(1/49)) = 49.00000000000001 in double:
  // the guarded ceil gives nb = 49, so 50 elements form blocks of ceil(50/49) = 2 (an
  // unguarded ceil would give nb = 50, blocks of 1).
  EXPECT_EQ(
      ref::payload_bytes(desc_or_die("rbgs:n=50,density=0.02040816326530612,align=partition")),
      32u + 8);
}

TEST(Rbgs, BlocksAreSharedAcrossRanks) {
  const auto d = desc_or_die("rbgs:shapes=100/7x9/33,density=0.1,seed=13");
  const auto in = test::normal_data(d.n, 3);
  int changed = 0;
  std::vector<std::uint8_t> first;
  for (std::uint32_t step = 0; step < 8; ++step) {
    const auto p0 = test::compress_ok(d, in, test::at_step(step, 0));
    ASSERT_GE(p0.size(), 32u);
    for (std::uint32_t rank = 1; rank < 4; ++rank)
      EXPECT_EQ(test::compress_ok(d, in, test::at_step(step, rank)), p0) << "rank " << rank;
    if (step == 0) first = p0;
    changed += !std::equal(p0.begin() + 32, p0.end(), first.begin() + 32, first.end());
  }
  EXPECT_GE(changed, 5);  // the block moves with the step
}

// How often each of 100 elements is selected over `steps` steps (density 0.07, k = 7). The
// `biased` variant draws s without wrap-around (s = uniform_below(n - k + 1)), which
// under-covers both ends: the same statistical test must catch it.
std::vector<std::uint64_t> coverage(const CompressorDesc& d, int steps, bool biased) {
  std::vector<std::uint64_t> hits(d.n, 0);
  std::vector<float> in(d.n);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = float(i + 1);
  for (int s = 0; s < steps; ++s) {
    if (biased) {
      const std::uint64_t start = rbgs_stream(d.seed, std::uint32_t(s)).uniform_below(94, 0, 0);
      for (std::uint64_t j = 0; j < 7; ++j) ++hits[start + j];
      continue;
    }
    auto out = roundtrip(d, in, test::at_step(std::uint32_t(s)));
    std::uint64_t nonzero = 0;
    for (std::size_t i = 0; i < out.size(); ++i)
      if (out[i] != 0.0f) {
        ++hits[i];
        ++nonzero;
      }
    EXPECT_EQ(nonzero, 7u);
  }
  return hits;
}

TEST(Rbgs, CoverageIsUniformKOverN) {
  // With a uniform start and wrap-around every element is covered by exactly k of the n starts:
  // P(selected) = k / n = 0.07 for every element, Binomial(steps, 0.07) counts.
  const auto d = desc_or_die("rbgs:n=100,density=0.07,seed=17");
  const int steps = 4000;
  const double zmax = test::bonferroni_z(1e-6, 100);
  EXPECT_LT(test::max_binomial_z(coverage(d, steps, false), steps, 0.07), zmax);
  EXPECT_GT(test::max_binomial_z(coverage(d, steps, true), steps, 0.07), zmax);  // negative control
}

TEST(Rbgs, LinearSoPayloadsCanBeAllreduced) {
  for (const char* text : {"rbgs:shapes=33x7/100/5x4x3,density=0.2,seed=4",
                           "rbgs:shapes=33x7/100/5x4x3,density=0.2,seed=4,align=partition"}) {
    const auto d = desc_or_die(text);
    const auto a = test::normal_data(d.n, 5), b = test::normal_data(d.n, 6);
    for (std::uint32_t step = 0; step < 10; ++step)
      ASSERT_NO_FATAL_FAILURE(test::expect_linear_payloads(d, a, b, step))
          << text << " step " << step;
  }
}

TEST(Rbgs, PayloadSizeFormulaAndRoundTripAtEdgeSizes) {
  // Default density 0.001, one segment: k = max(1, floor(0.001 n)):
  //   n = 0: nothing (32 bytes); 1: k = 1 = n, dense (36); 31, 32, 33, 1023: k = 1 (36);
  //   4097: floor(4.097) = 4 (48); 2^20+3 = 1048579: floor(1048.579) = 1048 (32 + 4192).
  const std::map<std::uint64_t, std::uint64_t> k = {
      {0, 0}, {1, 1}, {31, 1}, {32, 1}, {33, 1}, {1023, 1}, {4097, 4}, {(1u << 20) + 3, 1048}};
  for (std::uint64_t n : test::edge_sizes()) {
    const auto d = desc_or_die("rbgs:seed=1,n=" + std::to_string(n));
    EXPECT_EQ(ref::payload_bytes(d), 32 + 4 * k.at(n)) << "n = " << n;
    const auto in = test::normal_data(n, 8);
    std::vector<std::uint8_t> p;
    auto out = roundtrip(d, in, test::at_step(3), &p);
    ASSERT_EQ(p.size(), 32 + 4 * k.at(n));
    if (n == 0) continue;
    // The block from the documented stream: [s, s + k) modulo n.
    const std::uint64_t s = rbgs_stream(1, 3).uniform_below(n, 0, 0);
    for (std::uint64_t i = 0; i < n; ++i) {
      const bool in_block = (i + n - s) % n < k.at(n);
      ASSERT_EQ(out[i], in_block ? in[i] : 0.0f) << "n = " << n << " i = " << i;
    }
  }
}

TEST(Rbgs, DensityOneIsDenseAndDensityZeroSendsNothing) {
  const auto in = test::normal_data(21, 4);
  for (const char* text :
       {"rbgs:shapes=3x4/9,density=1", "rbgs:shapes=3x4/9,density=1,align=partition"}) {
    const auto d = desc_or_die(text);
    std::vector<std::uint8_t> p;
    auto out = roundtrip(d, in, test::at_step(5), &p);
    auto want = test::expected_header_at(kRbgsId, 21, 5, 0, 21, 84, kFlagDense);
    for (float v : in) test::append_f32(want, v);  // natural order, not rotated
    EXPECT_EQ(p, want) << text;
    EXPECT_EQ(out, in);
  }
  const auto one = desc_or_die("rbgs:n=1");  // k = max(1, floor(0.001)) = 1 = n
  EXPECT_EQ(test::flags_of(test::compress_ok(one, {7.0f})), kFlagDense);
  EXPECT_EQ(roundtrip(one, {7.0f}), std::vector<float>{7.0f});
  const auto zero = desc_or_die("rbgs:shapes=3x4/9,density=0");
  std::vector<std::uint8_t> p;
  auto out = roundtrip(zero, in, {}, &p);
  EXPECT_EQ(p, test::expected_header_at(kRbgsId, 21, 0, 0, 0, 0));
  EXPECT_EQ(out, std::vector<float>(21, 0.0f));
}

TEST(Rbgs, ZerosAndNonFinitePolicy) {
  auto out = roundtrip(desc_or_die("rbgs:n=64,density=0.25"), std::vector<float>(64, 0.0f));
  for (float v : out) EXPECT_EQ(float_bits(v), 0u);
  std::vector<float> in = {1.0f, std::nanf(""), INFINITY, 4.0f};
  std::vector<std::uint8_t> p = {1, 2};
  EXPECT_EQ(ref::compress(desc_or_die("rbgs:n=4,density=0.5"), {}, in, p).code(),
            StatusCode::kNonFinite);
  EXPECT_EQ(p, (std::vector<std::uint8_t>{1, 2}));
  auto prop = roundtrip(desc_or_die("rbgs:n=4,density=1,nonfinite=propagate"), in);
  EXPECT_TRUE(std::isnan(prop[1]));
  EXPECT_EQ(prop[2], INFINITY);
}

TEST(Rbgs, CorruptPayloadsAreRejected) {
  std::vector<float> out(10, 0.0f);
  const std::vector<float> in = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  {
    const auto d = desc_or_die("rbgs:n=10,density=0.3,seed=2");
    const auto ctx = test::at_step(4);
    const auto good = test::compress_ok(d, in, ctx);
    ASSERT_EQ(good.size(), 32u + 12u);
    test::expect_truncations_rejected(d, good, ctx);
    auto p = good;
    store_u32(p.data() + 24, 2);
    test::expect_corrupt(d, p, "", ctx, "count 2 != k 3");
    p = good;
    store_u32(p.data() + 24, 10);
    test::expect_corrupt(d, p, "", ctx, "count n");
    p = good;
    p[7] = kFlagDense;
    test::expect_corrupt(d, p, "", ctx, "dense flag");
    p = good;
    store_f32(p.data() + 40, -INFINITY);
    test::expect_corrupt(d, p, "", ctx, "Inf value");
    p = good;
    p.resize(good.size() + 4, 0);
    store_u32(p.data() + 28, 16);
    test::expect_corrupt(d, p, "", ctx,
                         "a zero value after the k = 3 values (header body_bytes updated)");
  }
  {
    const auto d = desc_or_die("rbgs:n=10,density=0.3,align=partition,seed=6");
    std::uint32_t step = 0;
    while (rbgs_stream(6, step).uniform_below(4, 0, 0) != 3) ++step;  // the short last block
    const auto ctx = test::at_step(step);
    const auto good = test::compress_ok(d, in, ctx);
    ASSERT_EQ(good.size(), 36u);  // count 1: exactly one value
    test::expect_truncations_rejected(d, good, ctx);
    // Extra trailing bytes with a consistent header (body_bytes updated) are rejected: the body
    // must be exactly 4 * count bytes, so a body zero-padded to bs = 3 values is corrupt too.
    for (std::uint32_t extra : {1u, 4u, 8u}) {
      auto p = good;
      p.resize(good.size() + extra, 0);
      store_u32(p.data() + 28, 4 + extra);
      EXPECT_EQ(ref::decompress(d, ctx, p, Span<float>(out)).code(), StatusCode::kCorruptPayload)
          << extra << " extra bytes";
    }
    // count 3 (a full block) disagrees with the shared stream, which selects the last block.
    auto p = good;
    p.resize(44, 0);
    store_u32(p.data() + 24, 3);
    store_u32(p.data() + 28, 12);
    EXPECT_EQ(ref::decompress(d, ctx, p, Span<float>(out)).code(), StatusCode::kCorruptPayload);
  }
  {
    const auto d = desc_or_die("rbgs:n=10,density=1");  // dense: the flag is required
    auto p = test::compress_ok(d, in);
    ASSERT_EQ(p.size(), 32u + 40u);
    test::expect_truncations_rejected(d, p);
    p[7] = 0;
    EXPECT_EQ(ref::decompress(d, {}, p, Span<float>(out)).code(), StatusCode::kCorruptPayload);
  }
}

}  // namespace
}  // namespace gradcomp
