// Kokkos selection and quantization kernels (topk dgc threshold signtopk qsgd qsgd_topk
// qsgd_randk) against the reference: byte-identical payloads, identical decoded values and
// accumulations, identical Status codes for bad input and corrupt payloads.
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
  const CompressorDesc d = desc_or_die(text + ",n=" + std::to_string(n));
  SCOPED_TRACE(d.to_string() + " variant " + std::to_string(variant));
  const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
  ASSERT_NE(kk.compress, nullptr);
  const std::vector<float> in = data(n, variant);
  std::vector<std::uint8_t> pk, pr;
  const Status sk = kk.compress(d, ctx, in, pk);
  const Status sr = ref.compress(d, ctx, in, pr);
  ASSERT_EQ(sk.code(), sr.code()) << sk.to_string() << " vs " << sr.to_string();
  if (!sr.ok()) return;
  ASSERT_EQ(pk.size(), pr.size());
  ASSERT_TRUE(pk == pr) << "payload bytes differ";
  EXPECT_EQ(kk.payload_bytes(d), ref.payload_bytes(d));
  std::vector<float> ok(n, 7.0f), orf(n, 7.0f);
  ASSERT_TRUE(kk.decompress(d, ctx, pr, Span<float>(ok)).ok());
  ASSERT_TRUE(ref.decompress(d, ctx, pk, Span<float>(orf)).ok());
  EXPECT_TRUE(same_bits(ok, orf)) << "decoded values differ";
  // out += alpha D(p); -0 entries check the reference's +0 addition on unselected entries.
  std::vector<float> ak(n), ar(n);
  for (std::uint64_t i = 0; i < n; ++i) ak[i] = ar[i] = (i % 5 == 0) ? -0.0f : in[i] * 0.25f;
  ASSERT_TRUE(kk.decompress_accumulate(d, ctx, pr, 0.375f, Span<float>(ak)).ok());
  ASSERT_TRUE(ref.decompress_accumulate(d, ctx, pr, 0.375f, Span<float>(ar)).ok());
  EXPECT_TRUE(same_bits(ak, ar)) << "accumulated values differ";
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
  check_all({"qsgd:levels=1", "qsgd:levels=3,seed=5", "qsgd:levels=7,bucket=100",
             "qsgd:levels=255,norm=max", "qsgd:levels=4,bucket=0", "qsgd:levels=1000000,bucket=33",
             "qsgd:levels=1073741824,bucket=7"},
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
      CompressorDesc d = desc_or_die(text + ",n=" + std::to_string(n));
      SCOPED_TRACE(d.to_string());
      const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
      std::vector<float> in = data(n, 0);
      std::vector<std::uint8_t> pk = {1, 2, 3}, pr;
      // Size mismatch.
      std::vector<float> shorter(n + 1, 0.0f);
      EXPECT_EQ(kk.compress(d, {}, shorter, pk).code(), StatusCode::kInvalidArgument);
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
        // nonfinite=propagate: both sides accept, same bytes.
        CompressorDesc dp = d;
        dp.nonfinite = NonfinitePolicy::kPropagate;
        std::vector<std::uint8_t> qk, qr;
        ASSERT_EQ(kk.compress(dp, {}, v, qk).code(), ref.compress(dp, {}, v, qr).code());
        EXPECT_TRUE(qk == qr) << "propagate payloads differ";
        if (!qr.empty()) {
          std::vector<float> ok(n), orf(n);
          EXPECT_EQ(kk.decompress(dp, {}, qr, Span<float>(ok)).code(),
                    ref.decompress(dp, {}, qr, Span<float>(orf)).code());
          EXPECT_TRUE(same_bits(ok, orf));
          // The same payload under nonfinite=error may decode to non-finite: both reject.
          std::vector<float> ek(n, 5.0f), er(n, 5.0f);
          EXPECT_EQ(kk.decompress(d, {}, qr, Span<float>(ek)).code(),
                    ref.decompress(d, {}, qr, Span<float>(er)).code());
          EXPECT_TRUE(same_bits(ek, er));
        }
      }
      std::vector<float> out(n + 1);
      ASSERT_TRUE(ref.compress(d, {}, in, pr).ok());
      EXPECT_EQ(kk.decompress(d, {}, pr, Span<float>(out)).code(), StatusCode::kInvalidArgument);
    }
  }
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
                                          "qsgd_topk:k=6,levels=5",
                                          "qsgd_randk:k=6,levels=3",
                                          "qsgd_randk:k=6,indices=private",
                                          "topk:density=1"};
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  for (const std::string& text : kinds) {
    const CompressorDesc d = desc_or_die(text + ",n=77");
    SCOPED_TRACE(d.to_string());
    const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
    const std::vector<float> in = data(77, 1);
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
