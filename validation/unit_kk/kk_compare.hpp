// Helpers of the kk-vs-reference unit tests (all test_kk_*.cpp kernel groups): byte-identical
// payloads, bit-identical decodes and accumulations, identical Status codes for bad input and
// corrupt payloads, outputs untouched on error.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/kernels/registry.hpp"
#include "test_util.hpp"

namespace gradcomp::kktest {

inline CompressorOps kk_ops(const CompressorDesc& d) {
  auto r = select_impl(d, "kk");
  EXPECT_TRUE(r.ok()) << d.to_string() << ": " << r.status().to_string();
  if (r.ok()) {
    EXPECT_FALSE(r.value()->is_reference) << "kk request got the reference";
  }
  return r.ok() ? r.value()->ops(d.kind) : CompressorOps{};
}
inline CompressorOps ref_ops(const CompressorDesc& d) {
  return select_impl(d, "ref").value()->ops(d.kind);
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

// Compress, decompress and accumulate on both implementations; everything must be identical.
// exact_size: payload_bytes(d) must be the payload's size, not only a bound (fixed-size formats).
inline void check_matches(const CompressorDesc& d, const CompressContext& ctx_kk,
                          const CompressContext& ctx_ref, const std::vector<float>& in,
                          bool exact_size = false) {
  SCOPED_TRACE(d.to_string());
  const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
  ASSERT_NE(kk.compress, nullptr);
  const std::uint64_t n = d.n;
  std::vector<std::uint8_t> pk, pr;
  const Status sk = kk.compress(d, ctx_kk, in, pk);
  const Status sr = ref.compress(d, ctx_ref, in, pr);
  ASSERT_EQ(sk.code(), sr.code()) << sk.to_string() << " vs " << sr.to_string();
  if (!sr.ok()) return;
  ASSERT_EQ(pk.size(), pr.size());
  ASSERT_TRUE(pk == pr) << "payload bytes differ";
  EXPECT_EQ(kk.payload_bytes(d), ref.payload_bytes(d));
  EXPECT_LE(pk.size(), kk.payload_bytes(d));
  if (exact_size) {
    EXPECT_EQ(pk.size(), kk.payload_bytes(d));
  }
  std::vector<float> ok(n, 7.0f), orf(n, 7.0f);
  ASSERT_TRUE(kk.decompress(d, ctx_kk, pr, Span<float>(ok)).ok());
  ASSERT_TRUE(ref.decompress(d, ctx_ref, pk, Span<float>(orf)).ok());
  EXPECT_TRUE(same_bits(ok, orf)) << "decoded values differ";
  std::vector<float> ak(n), ar(n);
  for (std::uint64_t i = 0; i < n; ++i) ak[i] = ar[i] = (i % 5 == 0) ? -0.0f : in[i] * 0.25f;
  ASSERT_TRUE(kk.decompress_accumulate(d, ctx_kk, pr, 0.375f, Span<float>(ak)).ok());
  ASSERT_TRUE(ref.decompress_accumulate(d, ctx_ref, pr, 0.375f, Span<float>(ar)).ok());
  EXPECT_TRUE(same_bits(ak, ar)) << "accumulated values differ";
}

// "name" or "name:opts" plus n.
inline CompressorDesc with_n(const std::string& text, std::uint64_t n) {
  const char sep = text.find(':') == std::string::npos ? ':' : ',';
  return test::desc_or_die(text + sep + "n=" + std::to_string(n));
}

inline void check_matches(const std::string& text, std::uint64_t n, const CompressContext& ctx) {
  const CompressorDesc d = with_n(text, n);
  check_matches(d, ctx, ctx, test::normal_data(n, 5 + n));
}

// nonfinite=propagate on input v: both sides accept or reject alike with the same bytes, decode
// it alike, and under nonfinite=error (d) both reject it alike with the output untouched.
inline void check_propagate(const CompressorDesc& d, const CompressContext& ctx,
                            const std::vector<float>& v) {
  const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
  const std::uint64_t n = d.n;
  CompressorDesc dp = d;
  dp.nonfinite = NonfinitePolicy::kPropagate;
  std::vector<std::uint8_t> qk, qr;
  ASSERT_EQ(kk.compress(dp, ctx, v, qk).code(), ref.compress(dp, ctx, v, qr).code());
  EXPECT_TRUE(qk == qr) << "propagate payloads differ";
  std::vector<float> ok(n), orf(n);
  EXPECT_EQ(kk.decompress(dp, ctx, qr, Span<float>(ok)).code(),
            ref.decompress(dp, ctx, qr, Span<float>(orf)).code());
  EXPECT_TRUE(same_bits(ok, orf));
  std::vector<float> ek(n, 5.0f), er(n, 5.0f);
  EXPECT_EQ(kk.decompress(d, ctx, qr, Span<float>(ek)).code(),
            ref.decompress(d, ctx, qr, Span<float>(er)).code());
  EXPECT_TRUE(same_bits(ek, er));
}

// Wrong sizes and NaN/Inf inputs: the reference's codes, the index named, payload untouched.
// in: a valid input; propagate: also run check_propagate on each bad input.
inline void check_bad_inputs(const CompressorDesc& d, const CompressContext& ctx,
                             const std::vector<float>& in, bool propagate) {
  SCOPED_TRACE(d.to_string());
  const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
  const std::uint64_t n = d.n;
  ASSERT_GT(n, 0u);
  ASSERT_EQ(in.size(), n);
  const std::vector<std::uint8_t> sentinel = {1, 2, 3};
  std::vector<std::uint8_t> pk = sentinel, pr;
  std::vector<float> longer(n + 1, 0.0f);
  EXPECT_EQ(kk.compress(d, ctx, longer, pk).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pk, sentinel) << "payload touched on error";
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    std::vector<float> v = in;
    v[n / 2] = bad;
    if (n > 2) v[n - 1] = bad;
    const Status sk = kk.compress(d, ctx, v, pk);
    const Status sr = ref.compress(d, ctx, v, pr);
    EXPECT_EQ(sk.code(), StatusCode::kNonFinite) << sk.to_string();
    EXPECT_EQ(sk.code(), sr.code());
    EXPECT_NE(sk.message().find("input[" + std::to_string(n / 2) + "]"), std::string::npos)
        << sk.message();
    EXPECT_EQ(pk, sentinel);
    if (propagate) check_propagate(d, ctx, v);
  }
  std::vector<float> out(n + 1);
  ASSERT_TRUE(ref.compress(d, ctx, in, pr).ok());
  EXPECT_EQ(kk.decompress(d, ctx, pr, Span<float>(out)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(kk.decompress_accumulate(d, ctx, pr, 1.0f, Span<float>(out)).code(),
            StatusCode::kInvalidArgument);
}

inline void check_bad_inputs(const CompressorDesc& d, const CompressContext& ctx) {
  check_bad_inputs(d, ctx, test::normal_data(d.n, 3), false);
}

// Every truncation and many single-byte corruptions of a valid payload: same code as the
// reference; on error the output is untouched (decompress and accumulate).
inline void check_corruptions(const CompressorDesc& d, const CompressContext& ctx,
                              const std::vector<float>& in) {
  SCOPED_TRACE(d.to_string());
  const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
  const std::uint64_t n = d.n;
  std::vector<std::uint8_t> p;
  ASSERT_TRUE(ref.compress(d, ctx, in, p).ok());
  int rejected = 0;
  auto expect_same = [&](const std::vector<std::uint8_t>& q, const std::string& what) {
    std::vector<float> ok(n, 9.0f), orf(n, 9.0f), ak(n, 9.0f);
    const Status sk = kk.decompress(d, ctx, q, Span<float>(ok));
    const Status sr = ref.decompress(d, ctx, q, Span<float>(orf));
    EXPECT_EQ(sk.code(), sr.code()) << what << ": " << sk.to_string() << " vs " << sr.to_string();
    const Status sa = kk.decompress_accumulate(d, ctx, q, 2.0f, Span<float>(ak));
    EXPECT_EQ(sa.code(), sr.code()) << what;
    if (!sk.ok()) {
      ++rejected;
      EXPECT_TRUE(same_bits(ok, std::vector<float>(n, 9.0f))) << what << ": out touched";
      EXPECT_TRUE(same_bits(ak, std::vector<float>(n, 9.0f))) << what << ": out touched";
    } else {
      EXPECT_TRUE(same_bits(ok, orf)) << what;
    }
  };
  for (std::size_t len = 0; len < p.size(); ++len)
    expect_same(std::vector<std::uint8_t>(p.begin(), p.begin() + static_cast<long>(len)),
                "truncated to " + std::to_string(len));
  for (std::size_t pos = 0; pos < p.size(); ++pos) {
    for (unsigned x : {0x01u, 0x80u, 0xFFu, 0x40u}) {
      std::vector<std::uint8_t> q = p;
      q[pos] = static_cast<std::uint8_t>(q[pos] ^ x);
      expect_same(q, "byte " + std::to_string(pos) + " ^ " + std::to_string(x));
    }
  }
  EXPECT_GT(rejected, static_cast<int>(p.size())) << "corruptions were hardly ever detected";
}

}  // namespace gradcomp::kktest
