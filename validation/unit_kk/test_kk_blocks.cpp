// Kokkos blocks-group kernels (currently randk) against the reference: byte-identical payloads,
// identical decoded values and accumulations, identical Status codes for bad input and corrupt
// payloads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/kernels/registry.hpp"
#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;
using test::edge_sizes;
using test::normal_data;

CompressorOps kk_ops(const CompressorDesc& d) {
  auto r = select_impl(d, "kk");
  EXPECT_TRUE(r.ok()) << d.to_string() << ": " << r.status().to_string();
  return r.ok() ? r.value()->ops(d.kind) : CompressorOps{};
}
CompressorOps ref_ops(const CompressorDesc& d) {
  return select_impl(d, "ref").value()->ops(d.kind);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

void check_case(const std::string& text, std::uint64_t n, const CompressContext& ctx) {
  const CompressorDesc d = desc_or_die(text + ",n=" + std::to_string(n));
  SCOPED_TRACE(d.to_string());
  const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
  ASSERT_NE(kk.compress, nullptr);
  const std::vector<float> in = normal_data(n, 5 + n);
  std::vector<std::uint8_t> pk, pr;
  const Status sk = kk.compress(d, ctx, in, pk);
  const Status sr = ref.compress(d, ctx, in, pr);
  ASSERT_EQ(sk.code(), sr.code()) << sk.to_string() << " vs " << sr.to_string();
  if (!sr.ok()) return;
  ASSERT_EQ(pk.size(), pr.size());
  ASSERT_TRUE(pk == pr) << "payload bytes differ";
  EXPECT_EQ(kk.payload_bytes(d), ref.payload_bytes(d));
  EXPECT_EQ(kk.payload_bytes(d), pk.size());
  std::vector<float> ok(n, 7.0f), orf(n, 7.0f);
  ASSERT_TRUE(kk.decompress(d, ctx, pr, Span<float>(ok)).ok());
  ASSERT_TRUE(ref.decompress(d, ctx, pk, Span<float>(orf)).ok());
  EXPECT_TRUE(same_bits(ok, orf)) << "decoded values differ";
  std::vector<float> ak(n), ar(n);
  for (std::uint64_t i = 0; i < n; ++i) ak[i] = ar[i] = (i % 5 == 0) ? -0.0f : in[i] * 0.25f;
  ASSERT_TRUE(kk.decompress_accumulate(d, ctx, pr, 0.375f, Span<float>(ak)).ok());
  ASSERT_TRUE(ref.decompress_accumulate(d, ctx, pr, 0.375f, Span<float>(ar)).ok());
  EXPECT_TRUE(same_bits(ak, ar)) << "accumulated values differ";
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
      const CompressorDesc d = desc_or_die(text + ",n=" + std::to_string(n));
      SCOPED_TRACE(d.to_string());
      const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
      const std::vector<float> in = normal_data(n, 3);
      std::vector<std::uint8_t> pk = {1, 2, 3}, pr;
      std::vector<float> longer(n + 1, 0.0f);
      EXPECT_EQ(kk.compress(d, {}, longer, pk).code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(pk, (std::vector<std::uint8_t>{1, 2, 3})) << "payload touched on error";
      for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
        std::vector<float> v = in;
        v[n / 2] = bad;
        if (n > 2) v[n - 1] = bad;
        const Status sk = kk.compress(d, {}, v, pk);
        const Status sr = ref.compress(d, {}, v, pr);
        EXPECT_EQ(sk.code(), StatusCode::kNonFinite);
        EXPECT_EQ(sk.code(), sr.code());
        EXPECT_NE(sk.message().find("input[" + std::to_string(n / 2) + "]"), std::string::npos)
            << sk.message();
        EXPECT_EQ(pk, (std::vector<std::uint8_t>{1, 2, 3}));
        CompressorDesc dp = d;
        dp.nonfinite = NonfinitePolicy::kPropagate;
        std::vector<std::uint8_t> qk, qr;
        ASSERT_EQ(kk.compress(dp, {}, v, qk).code(), ref.compress(dp, {}, v, qr).code());
        EXPECT_TRUE(qk == qr) << "propagate payloads differ";
        std::vector<float> ek(n, 5.0f), er(n, 5.0f);
        EXPECT_EQ(kk.decompress(d, {}, qr, Span<float>(ek)).code(),
                  ref.decompress(d, {}, qr, Span<float>(er)).code());
        EXPECT_TRUE(same_bits(ek, er));
      }
      // rescale=unbiased: x * n/k overflowing f32 is reported like the reference.
      CompressorDesc du = d;
      du.randk_scale = RandKScale::kUnbiased;
      std::vector<float> huge(n, 3.0e38f);
      EXPECT_EQ(kk.compress(du, {}, huge, pk).code(), ref.compress(du, {}, huge, pr).code());
      std::vector<float> out(n + 1);
      ASSERT_TRUE(ref.compress(d, {}, in, pr).ok());
      EXPECT_EQ(kk.decompress(d, {}, pr, Span<float>(out)).code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(KkBlocks, RandkCorruptPayloadsRejectedLikeReference) {
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  for (const std::string text :
       {"randk:k=6", "randk:k=6,indices=private", "randk:k=6,indices=private,rescale=unbiased",
        "randk:k=0", "randk:density=1"}) {
    const CompressorDesc d = desc_or_die(text + ",n=77");
    SCOPED_TRACE(d.to_string());
    const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
    const std::vector<float> in = normal_data(77, 1);
    std::vector<std::uint8_t> p;
    ASSERT_TRUE(ref.compress(d, ctx, in, p).ok());
    auto expect_same = [&](const std::vector<std::uint8_t>& q, const std::string& what) {
      std::vector<float> ok(77, 9.0f), orf(77, 9.0f), ak(77, 9.0f);
      const Status sk = kk.decompress(d, ctx, q, Span<float>(ok));
      const Status sr = ref.decompress(d, ctx, q, Span<float>(orf));
      EXPECT_EQ(sk.code(), sr.code()) << what << ": " << sk.to_string() << " vs " << sr.to_string();
      const Status sa = kk.decompress_accumulate(d, ctx, q, 2.0f, Span<float>(ak));
      EXPECT_EQ(sa.code(), sr.code()) << what;
      if (!sk.ok()) {
        EXPECT_TRUE(same_bits(ok, std::vector<float>(77, 9.0f))) << what << ": out touched";
        EXPECT_TRUE(same_bits(ak, std::vector<float>(77, 9.0f))) << what << ": out touched";
      } else {
        EXPECT_TRUE(same_bits(ok, orf)) << what;
      }
    };
    for (std::size_t len = 0; len < p.size(); ++len)
      expect_same(std::vector<std::uint8_t>(p.begin(), p.begin() + static_cast<long>(len)),
                  "truncated to " + std::to_string(len));
    for (std::size_t pos = 0; pos < p.size(); ++pos) {
      for (unsigned x : {0x01u, 0x80u, 0xFFu, 0x10u}) {
        std::vector<std::uint8_t> q = p;
        q[pos] = static_cast<std::uint8_t>(q[pos] ^ x);
        expect_same(q, "byte " + std::to_string(pos) + " ^ " + std::to_string(x));
      }
    }
  }
}

}  // namespace
}  // namespace gradcomp
