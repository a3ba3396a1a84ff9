// Kokkos blocks-group kernels (currently randk) against the reference: byte-identical payloads,
// identical decoded values and accumulations, identical Status codes for bad input and corrupt
// payloads.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kk_compare.hpp"

namespace gradcomp::kktest {
namespace {

using test::edge_sizes;
using test::normal_data;

// randk's payload size is fixed by n and k, so payload_bytes must be exact.
void check_case(const std::string& text, std::uint64_t n, const CompressContext& ctx) {
  check_matches(with_n(text, n), ctx, ctx, normal_data(n, 5 + n), true);
}

TEST(KkBlocks, RandkMatchesReference) {
  const CompressContext ctxs[] = {{}, {3, 2, 1, {}, nullptr}, {17, 5, 3, {}, nullptr}};
  for (const std::string text :
       {"randk:density=0.01", "randk:k=5,seed=3", "randk:k=0", "randk:density=1", "randk:k=33",
        "randk:density=0.3,indices=private", "randk:k=9,indices=private,rescale=unbiased",
        "randk:density=0.05,rescale=unbiased", "randk:density=0.5,nonfinite=propagate"}) {
    for (std::uint64_t n : edge_sizes())
      for (const auto& ctx : ctxs) check_case(text, n, ctx);
  }
}

TEST(KkBlocks, RandkBadInputStatusesMatchReference) {
  for (const std::string text :
       {"randk:k=4", "randk:k=4,indices=private", "randk:k=0", "randk:density=1"}) {
    for (std::uint64_t n : {1ull, 100ull, 4097ull}) {
      const CompressorDesc d = with_n(text, n);
      check_bad_inputs(d, {}, normal_data(n, 3), true);
      SCOPED_TRACE(d.to_string());
      const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
      std::vector<std::uint8_t> pk, pr;
      // rescale=unbiased: x * n/k overflowing f32 is reported like the reference.
      CompressorDesc du = d;
      du.randk_scale = RandKScale::kUnbiased;
      std::vector<float> huge(n, 3.0e38f);
      EXPECT_EQ(kk.compress(du, {}, huge, pk).code(), ref.compress(du, {}, huge, pr).code());
    }
  }
}

TEST(KkBlocks, RandkCorruptPayloadsRejectedLikeReference) {
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  for (const std::string text :
       {"randk:k=6", "randk:k=6,indices=private", "randk:k=6,indices=private,rescale=unbiased",
        "randk:k=0", "randk:density=1"}) {
    check_corruptions(with_n(text, 77), ctx, normal_data(77, 1));
  }
}

}  // namespace
}  // namespace gradcomp::kktest
