// Kokkos streaming kernels (identity fp16 bf16 sign blocksign) against the reference:
// byte-identical payloads, identical decoded values and accumulations, identical Status codes for
// bad input and corrupt payloads, outputs untouched on error.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kk_compare.hpp"

namespace gradcomp::kktest {
namespace {

using test::desc_or_die;
using test::normal_data;

const std::vector<std::uint64_t> kSizes = {0, 1, 31, 32, 33, 1023, 4097, (1u << 20) + 3};

// variant 0: normal; 1: signed zeros and exact halves; 2: alternately tiny (fp16 subnormals and
// underflow to zero) and large (|x| up to ~1e4: coarse fp16/bf16 rounding).
std::vector<float> data(std::uint64_t n, int variant) {
  std::vector<float> v = normal_data(n, 21 + static_cast<std::uint64_t>(variant));
  for (std::uint64_t i = 0; i < n; ++i) {
    if (variant == 1 && i % 3 != 0) v[i] = (i % 2) ? -0.0f : std::round(v[i] * 2.0f) / 2.0f;
    if (variant == 2) v[i] *= (i % 2) ? 1e-6f : 3e3f;
  }
  return v;
}

void check_case(const std::string& text, std::uint64_t n, int variant, const CompressContext& ctx) {
  SCOPED_TRACE("variant " + std::to_string(variant));
  check_matches(with_n(text, n), ctx, ctx, data(n, variant));
}

void check_all(const std::vector<std::string>& cases) {
  const CompressContext ctxs[] = {{}, {3, 2, 1, {}, nullptr}};
  for (const std::string& text : cases) {
    for (std::uint64_t n : kSizes) {
      for (int variant = 0; variant < 3; ++variant) {
        if (n > 5000 && variant > 0) continue;
        for (const auto& ctx : ctxs) check_case(text, n, variant, ctx);
      }
    }
  }
}

TEST(KkStreaming, IdentityMatchesReference) {
  check_all({"identity", "identity:nonfinite=propagate"});
}
TEST(KkStreaming, Fp16MatchesReference) { check_all({"fp16", "fp16:nonfinite=propagate"}); }
TEST(KkStreaming, Bf16MatchesReference) { check_all({"bf16", "bf16:nonfinite=propagate"}); }
TEST(KkStreaming, SignMatchesReference) { check_all({"sign", "sign:seed=4"}); }
TEST(KkStreaming, BlocksignMatchesReference) {
  check_all({"blocksign", "blocksign:scale=l2", "blocksign:scale=none", "blocksign:block=32",
             "blocksign:block=7,scale=l2", "blocksign:block=1000,scale=none", "blocksign:block=1"});
}
TEST(KkStreaming, BlocksignPerSegment) {
  const CompressContext ctx{1, 0, 0, {}, nullptr};
  for (const char* s : {"l1", "l2", "none"}) {
    check_case(std::string("blocksign:scale=") + s + ",shapes=10x10/33/1", 134, 0, ctx);
    check_case(std::string("blocksign:scale=") + s + ",shapes=1/40/3x31", 134, 1, ctx);
  }
}

// The vectorised fp16/bf16 codecs are branch-free rewrites: every 16-bit pattern decoded, and
// float bit patterns around every half/bf16 rounding boundary (ties, subnormals, overflow, NaN
// payloads) plus a spread over all 2^32, encoded, all bit-identical to the reference.
TEST(KkStreaming, HalfCodecsAllPatterns) {
  std::vector<float> v;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    for (const std::uint32_t base :
         {float_bits(f16_bits_to_float(static_cast<std::uint16_t>(h))), h << 16}) {
      for (const std::uint32_t d : {0u, 1u, 0xfffu, 0x1000u, 0x1001u, 0x7fffu, 0x8000u}) {
        v.push_back(bits_float(base + d));
        v.push_back(bits_float(base - d));
      }
    }
  }
  for (std::uint32_t k = 0; k < (1u << 20); ++k) v.push_back(bits_float(k * 0x9E3779B1u));
  // Not check_matches: its accumulate target holds the input's NaNs, and which of two NaN
  // operands an add returns is up to the compiler's operand order, in both implementations.
  for (const char* text : {"fp16:nonfinite=propagate", "bf16:nonfinite=propagate"}) {
    const CompressorDesc d = with_n(text, v.size());
    SCOPED_TRACE(d.to_string());
    const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
    std::vector<std::uint8_t> pk, pr;
    ASSERT_TRUE(kk.compress(d, {}, v, pk).ok());
    ASSERT_TRUE(ref.compress(d, {}, v, pr).ok());
    ASSERT_TRUE(pk == pr) << "payload bytes differ";
    std::vector<float> ok(v.size()), orf(v.size());
    ASSERT_TRUE(kk.decompress(d, {}, pr, Span<float>(ok)).ok());
    ASSERT_TRUE(ref.decompress(d, {}, pr, Span<float>(orf)).ok());
    EXPECT_TRUE(same_bits(ok, orf)) << "decoded values differ";
    std::vector<float> ak = normal_data(v.size(), 3), ar = ak;
    ASSERT_TRUE(kk.decompress_accumulate(d, {}, pr, 0.375f, Span<float>(ak)).ok());
    ASSERT_TRUE(ref.decompress_accumulate(d, {}, pr, 0.375f, Span<float>(ar)).ok());
    EXPECT_TRUE(same_bits(ak, ar)) << "accumulated values differ";
  }
}

// Sign decoding adds alpha * (+-s) as one double with a flipped sign bit, except where that is
// not exact (NaN alpha, NaN scale under nonfinite=propagate): both paths against the reference.
TEST(KkStreaming, SignAccumulateNanAlphaAndScale) {
  for (const char* text : {"sign", "blocksign:block=64,nonfinite=propagate",
                           "blocksign:block=64,scale=l2,nonfinite=propagate"}) {
    const CompressorDesc d = with_n(text, 1000);
    SCOPED_TRACE(d.to_string());
    const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
    std::vector<float> v = data(1000, 0);
    if (d.nonfinite == NonfinitePolicy::kPropagate) v[100] = std::nanf("");  // block 1
    std::vector<std::uint8_t> p;
    ASSERT_TRUE(ref.compress(d, {}, v, p).ok());
    for (const float alpha : {0.375f, -0.0f, std::nanf(""), -INFINITY}) {
      std::vector<float> ak = data(1000, 1), ar = ak;
      ASSERT_TRUE(kk.decompress_accumulate(d, {}, p, alpha, Span<float>(ak)).ok());
      ASSERT_TRUE(ref.decompress_accumulate(d, {}, p, alpha, Span<float>(ar)).ok());
      EXPECT_TRUE(same_bits(ak, ar)) << "alpha " << alpha;
    }
  }
}

// fp16 overflow of a finite input under nonfinite=error: same code and index as the reference,
// and a NaN elsewhere (even later) takes precedence like the reference's input sweep.
TEST(KkStreaming, Fp16OverflowStatus) {
  const CompressorDesc d = desc_or_die("fp16:n=100");
  const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
  std::vector<float> v(100, 1.0f);
  v[40] = 1e6f;
  std::vector<std::uint8_t> pk = {9}, pr;
  Status sk = kk.compress(d, {}, v, pk), sr = ref.compress(d, {}, v, pr);
  EXPECT_EQ(sk.code(), StatusCode::kNonFinite);
  EXPECT_EQ(sk.code(), sr.code());
  EXPECT_NE(sk.message().find("input[40]"), std::string::npos) << sk.message();
  EXPECT_EQ(pk, std::vector<std::uint8_t>{9});
  v[90] = std::nanf("");
  sk = kk.compress(d, {}, v, pk);
  EXPECT_NE(sk.message().find("input[90]"), std::string::npos) << sk.message();
  EXPECT_EQ(sk.code(), ref.compress(d, {}, v, pr).code());
}

TEST(KkStreaming, BadInputStatusesMatchReference) {
  const std::vector<std::string> kinds = {"identity",
                                          "fp16",
                                          "bf16",
                                          "sign",
                                          "blocksign",
                                          "blocksign:scale=l2",
                                          "blocksign:block=64",
                                          "blocksign:scale=none,block=5"};
  for (const std::string& text : kinds) {
    for (std::uint64_t n : {1ull, 100ull, 4097ull, 9000ull}) {
      check_bad_inputs(with_n(text, n), {}, data(n, 0), true);
    }
  }
}

// Corruptions: every single-bit flip in the header and at sampled body positions (padding,
// scales, values), truncation and extension. kk and ref must agree on the code, and a rejected
// payload leaves the output untouched.
TEST(KkStreaming, CorruptPayloadsMatchReference) {
  const std::vector<std::string> kinds = {"identity",
                                          "fp16",
                                          "bf16",
                                          "sign",
                                          "blocksign",
                                          "blocksign:scale=l2,block=8",
                                          "blocksign:scale=none,block=8"};
  for (const std::string& text : kinds) {
    for (std::uint64_t n : {1ull, 33ull, 70ull}) {
      const CompressorDesc d = with_n(text, n);
      SCOPED_TRACE(d.to_string());
      const CompressorOps kk = kk_ops(d), ref = ref_ops(d);
      const CompressContext ctx{2, 1, 0, {}, nullptr};
      std::vector<std::uint8_t> p;
      ASSERT_TRUE(ref.compress(d, ctx, data(n, 0), p).ok());
      auto expect_same = [&](const std::vector<std::uint8_t>& q) {
        std::vector<float> ok(n, 3.0f), orf(n, 3.0f);
        const Status sk = kk.decompress(d, ctx, q, Span<float>(ok));
        const Status sr = ref.decompress(d, ctx, q, Span<float>(orf));
        ASSERT_EQ(sk.code(), sr.code()) << sk.to_string() << " vs " << sr.to_string();
        EXPECT_TRUE(same_bits(ok, orf));
        std::vector<float> ak(n, 3.0f), ar(n, 3.0f);
        EXPECT_EQ(kk.decompress_accumulate(d, ctx, q, 0.5f, Span<float>(ak)).code(),
                  ref.decompress_accumulate(d, ctx, q, 0.5f, Span<float>(ar)).code());
        EXPECT_TRUE(same_bits(ak, ar));
      };
      for (std::size_t byte = 0; byte < p.size(); ++byte) {
        for (int bit = 0; bit < 8; ++bit) {
          std::vector<std::uint8_t> q = p;
          q[byte] = static_cast<std::uint8_t>(q[byte] ^ (1u << bit));
          expect_same(q);
        }
      }
      std::vector<std::uint8_t> q = p;
      q.pop_back();
      expect_same(q);
      q = p;
      q.push_back(0);
      expect_same(q);
      expect_same({});
    }
  }
}

}  // namespace
}  // namespace gradcomp::kktest
