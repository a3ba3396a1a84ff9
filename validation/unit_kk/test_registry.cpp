// The implementation registry: order, names, and no silent fallback to the reference.
#include <gtest/gtest.h>

#include "gradcomp/kernels/registry.hpp"

namespace gradcomp {
namespace {

CompressorDesc desc(const char* text) {
  auto r = parse_compressor(text);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.value();
}

TEST(Registry, ReferenceIsLastAndKokkosIsListed) {
  const auto& impls = compressor_impls();
  ASSERT_GE(impls.size(), 2u);
  EXPECT_EQ(impls.back().name, "ref:any");
  EXPECT_TRUE(impls.back().is_reference);
  EXPECT_EQ(impls.front().name, "kk:serial");  // Debian's Kokkos: Serial backend only
  EXPECT_FALSE(impls.front().is_reference);
  for (std::size_t i = 0; i + 1 < impls.size(); ++i) EXPECT_FALSE(impls[i].is_reference);
}

TEST(Registry, SelectsByNameAndNeverFallsBackSilently) {
  const auto d = desc("sign:n=100");
  auto r = select_impl(d, "ref:any");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()->name, "ref:any");
  EXPECT_EQ(select_impl(d, "ref").value()->name, "ref:any");
  auto missing = select_impl(d, "cuda:warp_ballot");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(missing.status().message().find("not built"), std::string::npos);
  // Whatever "kk" can or cannot run, asking for it never returns the reference.
  for (const auto& info : compressor_catalog()) {
    const auto dk = desc((info.name + ":n=64").c_str());
    auto kk = select_impl(dk, "kk");
    if (kk.ok()) {
      EXPECT_FALSE(kk.value()->is_reference) << info.name;
    } else {
      EXPECT_EQ(kk.status().code(), StatusCode::kUnimplemented) << info.name;
      EXPECT_NE(kk.status().message().find("no fallback"), std::string::npos);
    }
    auto any = select_impl(dk, "");
    ASSERT_TRUE(any.ok()) << info.name;
    EXPECT_EQ(any.value()->is_reference, !kk.ok()) << info.name;
  }
}

TEST(Registry, ReferenceOpsRoundTrip) {
  const auto d = desc("topk:n=8,k=2");
  const CompressorImpl* ref = select_impl(d, "ref:any").value();
  const CompressorOps ops = ref->ops(d.kind);
  std::vector<float> in = {1, -5, 2, 0, 4, 0, 0, 0};
  std::vector<std::uint8_t> p;
  ASSERT_TRUE(ops.compress(d, {}, in, p).ok());
  EXPECT_EQ(p.size(), ops.payload_bytes(d));
  std::vector<float> acc(8, 1.0f);
  ASSERT_TRUE(ops.decompress_accumulate(d, {}, p, 0.5f, Span<float>(acc)).ok());
  EXPECT_EQ(acc, (std::vector<float>{1, -1.5f, 1, 1, 3, 1, 1, 1}));
}

}  // namespace
}  // namespace gradcomp
