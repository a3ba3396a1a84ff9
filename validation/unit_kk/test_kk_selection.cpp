// Kokkos selection and quantization kernels (topk dgc threshold signtopk qsgd qsgd_topk
// qsgd_randk) against the reference: byte-identical payloads, identical decoded values and
// accumulations, identical Status codes for bad input and corrupt payloads.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kk_compare.hpp"

namespace gradcomp::kktest {
namespace {

using test::edge_sizes;
using test::normal_data;

// Data with the features the selection rules care about.
std::vector<float> data(std::uint64_t n, int variant) {
  std::vector<float> v = normal_data(n, 11 + static_cast<std::uint64_t>(variant));
  for (std::uint64_t i = 0; i < n; ++i) {
    if (variant == 1) v[i] = std::round(v[i] * 2.0f) / 2.0f;        // many ties and zeros
    if (variant == 2 && i % 3 != 0) v[i] = (i % 2) ? -0.0f : 0.0f;  // mostly (signed) zeros
  }
  return v;
}

// kk vs ref: compress bytes, decompress of either payload by either side, accumulate.
void check_case(const std::string& text, std::uint64_t n, int variant, const CompressContext& ctx) {
  SCOPED_TRACE("variant " + std::to_string(variant));
  check_matches(with_n(text, n), ctx, ctx, data(n, variant));
}

void check_all(const std::vector<std::string>& cases, std::uint64_t big_every = 1) {
  const CompressContext ctxs[] = {{}, {3, 2, 1, {}, nullptr}};
  std::uint64_t c = 0;
  for (const std::string& text : cases) {
    for (std::uint64_t n : edge_sizes()) {
      if (n > 5000 && (c % big_every) != 0) continue;
      for (int variant = 0; variant < 3; ++variant) {
        if (n > 5000 && variant > 0) continue;
        for (const auto& ctx : ctxs) check_case(text, n, variant, ctx);
      }
    }
    ++c;
  }
}

TEST(KkSelection, TopkMatchesReference) {
  check_all({"topk:density=0.01", "topk:k=5,seed=3", "topk:k=0", "topk:density=1", "topk:k=33",
             "topk:density=0.3,nonfinite=propagate"},
            2);
}

TEST(KkSelection, DgcMatchesReference) {
  check_all({"dgc:density=0.01", "dgc:density=0.001,seed=9", "dgc:k=7",
             "dgc:density=0.05,sample_ratio=0.05", "dgc:density=0.01,selection=exact", "dgc:k=0",
             "dgc:density=1"},
            2);
}

// Many steps move the sample offset, so the adaptation rounds (threshold x 0.8, exact top-k
// above 1.3 k, truncation) all occur.
TEST(KkSelection, DgcSampledThresholdOverSteps) {
  for (std::uint32_t step = 0; step < 40; ++step) {
    const CompressContext ctx{step, 0, step % 3, {}, nullptr};
    for (int variant = 0; variant < 3; ++variant) {
      check_case("dgc:density=0.02", 4097, variant, ctx);
      check_case("dgc:k=40,sample_ratio=0.02", 20000, variant, ctx);
    }
  }
}

TEST(KkSelection, ThresholdMatchesReference) {
  check_all({"threshold:tau=0.5", "threshold:tau=0", "threshold:tau=2.5", "threshold:tau=-1",
             "threshold:tau=1.7"},
            2);
}

TEST(KkSelection, SigntopkMatchesReference) {
  check_all({"signtopk:density=0.01", "signtopk:k=3", "signtopk:k=0", "signtopk:density=1",
             "signtopk:k=64"},
            2);
}

TEST(KkSelection, QsgdMatchesReference) {
  check_all(
      {"qsgd:levels=1", "qsgd:levels=3,seed=5", "qsgd:levels=7,bucket=100",
       "qsgd:levels=255,norm=max", "qsgd:levels=4,bucket=0", "qsgd:levels=1000000,bucket=33",
       "qsgd:levels=1073741824,bucket=7",
       // Decode fast path (32-aligned buckets, codes of 2..8 bits) incl. a partial bucket.
       "qsgd:levels=4,bucket=64", "qsgd:levels=5,bucket=96,norm=max", "qsgd:levels=127,bucket=256"},
      2);
}

TEST(KkSelection, QsgdTopkMatchesReference) {
  check_all({"qsgd_topk:levels=4,density=0.01", "qsgd_topk:levels=1,k=5,scaled=1",
             "qsgd_topk:levels=15,density=0.05,norm=max", "qsgd_topk:k=0", "qsgd_topk:density=1"},
            2);
}

TEST(KkSelection, QsgdRandkMatchesReference) {
  check_all({"qsgd_randk:levels=4,density=0.01", "qsgd_randk:levels=2,k=9,indices=private",
             "qsgd_randk:levels=8,density=0.2,scaled=1,norm=max", "qsgd_randk:k=0",
             "qsgd_randk:density=1"},
            2);
}

TEST(KkSelection, QsgdShapes) {
  const CompressContext ctx{1, 0, 0, {}, nullptr};
  check_case("qsgd:levels=3,bucket=0,shapes=10x10/33/1", 134, 0, ctx);
}

// Status codes for bad input: size mismatch, NaN/Inf (first bad index named), propagate.
TEST(KkSelection, BadInputStatusesMatchReference) {
  const std::vector<std::string> kinds = {"topk:density=0.1",
                                          "dgc:density=0.1",
                                          "dgc:density=0.1,selection=exact",
                                          "threshold:tau=0.5",
                                          "signtopk:k=4",
                                          "qsgd:levels=3",
                                          "qsgd_topk:k=4,levels=3",
                                          "qsgd_randk:k=4,levels=3",
                                          "topk:k=0",
                                          "qsgd_randk:k=0",
                                          "topk:density=1"};
  for (const std::string& text : kinds) {
    for (std::uint64_t n : {1ull, 100ull, 4097ull}) {
      check_bad_inputs(with_n(text, n), {}, data(n, 0), true);
    }
  }
}

// Inputs large enough for select_topk's sampled threshold and the block-counting takes: ties
// and zeros (the sample can miss, then the two-pass select runs), NaN/Inf (first bad index,
// propagate), and many NaNs ranked first.
TEST(KkSelection, LargeInputsMatchReference) {
  const std::uint64_t n = 70001;
  const CompressContext ctx{5, 0, 1, {}, nullptr};
  for (const char* text :
       {"topk:density=0.001", "topk:k=1", "topk:density=0.2", "dgc:density=0.001",
        "dgc:density=0.001,selection=exact", "signtopk:density=0.01", "threshold:tau=2.5",
        "qsgd_topk:levels=4,density=0.01"}) {
    for (int variant = 0; variant < 3; ++variant) check_case(text, n, variant, ctx);
    check_bad_inputs(with_n(text, n), ctx, data(n, 0), true);
  }
  std::vector<float> v = data(n, 0);
  for (std::uint64_t i = 0; i < n; i += 97) v[i] = (i % 2) ? std::nanf("") : -INFINITY;
  check_matches(with_n("topk:density=0.001,nonfinite=propagate", n), ctx, ctx, v);
  check_matches(with_n("topk:density=0.05,nonfinite=propagate", n), ctx, ctx, v);
  // Strided samples (every 4th element here) that see only the large values, so the take
  // holds fewer than k (the two-pass select runs), and a constant input (more candidates than
  // the scratch holds).
  std::vector<float> w(n);
  for (std::uint64_t i = 0; i < n; ++i)
    w[i] =
        i % 4 == 0 ? 10.0f + static_cast<float>(i % 1000) : 0.5f * std::sin(static_cast<float>(i));
  check_matches(with_n("topk:density=0.05", n), ctx, ctx, w);
  check_matches(with_n("topk:density=0.01", n), ctx, ctx, std::vector<float>(n, -1.5f));
  // NaN/Inf in blocks the take counts but does not walk (past the scratch).
  check_bad_inputs(with_n("topk:density=0.01", n), ctx, std::vector<float>(n, -1.5f), true);
}

// Corrupt payloads: truncations and single-byte corruptions get the reference's status code,
// and the output is untouched on error.
TEST(KkSelection, CorruptPayloadsRejectedLikeReference) {
  const std::vector<std::string> kinds = {"topk:density=0.1",
                                          "dgc:density=0.1",
                                          "threshold:tau=0.5",
                                          "threshold:tau=0.01",
                                          "signtopk:k=5",
                                          "qsgd:levels=3,bucket=16",
                                          "qsgd:levels=2,norm=max",
                                          "qsgd:levels=4,bucket=32",
                                          "qsgd:levels=1,bucket=32",
                                          "qsgd_topk:k=6,levels=5",
                                          "qsgd_randk:k=6,levels=3",
                                          "qsgd_randk:k=6,indices=private",
                                          "topk:density=1"};
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  for (const std::string& text : kinds) {
    check_corruptions(with_n(text, 77), ctx, data(77, 1));
  }
}

}  // namespace
}  // namespace gradcomp::kktest
