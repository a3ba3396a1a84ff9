// cuda:native against the oracle (reference/): payload bytes, decoded values and fused
// decompress-accumulate, through the registry's host ops and through the device-pointer API,
// at the sizes 0, 1, 33, 4097 and 2^20 + 3; bad inputs give the oracle's Status codes.
// Needs a CUDA device (cuda_main.cpp runs only CudaNoDevice.* without one).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/kernels/cuda.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/rng.hpp"
#include "gradcomp/wire_format.hpp"

namespace gradcomp {
namespace {

// Every option set the CUDA backend implements, without n.
const char* const kCases[] = {
    "identity",
    "fp16",
    "bf16",
    "sign",
    "blocksign",
    "blocksign:scale=l2,block=64",
    "blocksign:scale=none,block=33",
    "qsgd",
    "qsgd:levels=7,bucket=100,norm=max",
    "qsgd:levels=3,bucket=0",
    "terngrad",
    "terngrad:clip=0",
    "topk:density=0.01",
    "topk:k=3",
    "threshold:tau=0.5",
    "threshold:tau=0",
    "randk:density=0.05",
    "randk:density=0.05,indices=private,rescale=unbiased",
    "dgc:density=0.01",
    "dgc:density=0.01,selection=exact",
    "dgc:k=3",
    "grbs:rho0=0.25",
    "grbs:rho0=0.25,rho_layer=0.5",
    "rbgs:density=0.1",
    "rbgs:density=0.2,align=partition",
    "rbgs:density=1",
    "signtopk:density=0.01",
    "signtopk:k=3",
    "qsgd_topk:density=0.01",
    "qsgd_topk:density=0.01,levels=7,norm=max,scaled=1",
    "qsgd_randk:density=0.05",
    "qsgd_randk:density=0.05,indices=private,scaled=1",
};
const std::uint64_t kSizes[] = {0, 1, 33, 4097, (1u << 20) + 3};

// Quarters in [-1.75, 1.75] (every sum of their squares is exact in double, so any reduction
// order gives the oracle's bits), with ties for top-k and zeros for sign/threshold; or general
// floats of mixed magnitude ("real": only reduction-free compressors are byte-exact there).
std::vector<float> fill(std::uint64_t n, bool exact, std::uint32_t salt) {
  const RngStream rng(1234, RngPurpose::kTestData, salt, 0, 0);
  std::vector<float> v(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const Philox4x32 w = rng.words(i);
    if (exact) {
      v[i] = static_cast<float>(static_cast<int>(w.v[0] % 15u) - 7) * 0.25f;
    } else {
      const float u = RngStream::to_unit_float(w.v[0]) - 0.5f;
      v[i] = u * std::ldexp(1.0f, static_cast<int>(w.v[1] % 20u) - 10);
    }
  }
  return v;
}

bool has_reduction(CompressorKind k) {
  return k == CompressorKind::kBlockSign || k == CompressorKind::kQsgd ||
         k == CompressorKind::kTernGrad || k == CompressorKind::kSignTopK ||
         k == CompressorKind::kQsgdTopK || k == CompressorKind::kQsgdRandK;
}

CompressorDesc desc_for(const std::string& c, std::uint64_t n) {
  const std::string text =
      c + (c.find(':') == std::string::npos ? ":" : ",") + "n=" + std::to_string(n) + ",seed=11";
  auto d = parse_compressor(text);
  EXPECT_TRUE(d.ok()) << text << ": " << d.status().to_string();
  return d.value();
}

const CompressorImpl& cuda_impl(const CompressorDesc& d) {
  auto sel = select_impl(d, "cuda:native");
  EXPECT_TRUE(sel.ok()) << sel.status().to_string();
  return *sel.value();
}

std::vector<std::uint32_t> as_bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), 4 * v.size());
  return b;
}

class CudaVsRef : public ::testing::TestWithParam<std::tuple<const char*, std::uint64_t>> {};

TEST_P(CudaVsRef, PayloadDecodeAccumulate) {
  const std::string c = std::get<0>(GetParam());
  const std::uint64_t n = std::get<1>(GetParam());
  const CompressorDesc d = desc_for(c, n);
  const CompressorOps ops = cuda_impl(d).ops(d.kind);
  CompressContext ctx;
  ctx.step = 5;
  ctx.tensor_id = 2;
  ctx.rank = 1;
  for (bool exact : {true, false}) {
    if (!exact && has_reduction(d.kind)) continue;  // scales may round differently: see below
    SCOPED_TRACE(d.to_string() + (exact ? " exact fill" : " real fill"));
    const std::vector<float> in = fill(n, exact, 3);
    std::vector<std::uint8_t> p_ref, p_cu;
    ASSERT_TRUE(ref::compress(d, ctx, in, p_ref).ok());
    const Status s = ops.compress(d, ctx, in, p_cu);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(ops.payload_bytes(d), ref::payload_bytes(d));
    ASSERT_EQ(p_cu.size(), p_ref.size());
    EXPECT_TRUE(p_cu == p_ref) << "payload bytes differ from the oracle";

    std::vector<float> o_ref(n, 7.0f), o_cu(n, 7.0f);
    ASSERT_TRUE(ref::decompress(d, ctx, p_ref, Span<float>(o_ref)).ok());
    ASSERT_TRUE(ops.decompress(d, ctx, p_ref, Span<float>(o_cu)).ok());
    EXPECT_TRUE(as_bits(o_cu) == as_bits(o_ref)) << "decoded values differ";

    // Fused accumulate vs the registry's reference accumulate (alpha = 0.5: exact products).
    const CompressorOps rops = select_impl(d, "ref:any").value()->ops(d.kind);
    std::vector<float> a_ref = fill(n, true, 9), a_cu = a_ref;
    ASSERT_TRUE(rops.decompress_accumulate(d, ctx, p_ref, 0.5f, Span<float>(a_ref)).ok());
    ASSERT_TRUE(ops.decompress_accumulate(d, ctx, p_ref, 0.5f, Span<float>(a_cu)).ok());
    EXPECT_TRUE(as_bits(a_cu) == as_bits(a_ref)) << "accumulated values differ";
  }
}

// Real fills for the compressors with a parallel reduction: header and every packed bit exact,
// scales within the reduction_f32 row of docs/tolerances.md.
TEST_P(CudaVsRef, ReductionsOnRealFill) {
  const std::string c = std::get<0>(GetParam());
  const std::uint64_t n = std::get<1>(GetParam());
  const CompressorDesc d = desc_for(c, n);
  if (!has_reduction(d.kind)) GTEST_SKIP() << "no reduction";
  // TernGrad's sigma moves the clip bound and the scaler together: a one-ulp change can flip a
  // keep decision (a value of s instead of 0), which no value tolerance describes.
  if (d.kind == CompressorKind::kTernGrad) GTEST_SKIP() << "covered by the exact fills";
  const CompressorOps ops = cuda_impl(d).ops(d.kind);
  CompressContext ctx;
  const std::vector<float> in = fill(n, false, 4);
  std::vector<std::uint8_t> p_ref, p_cu;
  ASSERT_TRUE(ref::compress(d, ctx, in, p_ref).ok());
  ASSERT_TRUE(ops.compress(d, ctx, in, p_cu).ok());
  ASSERT_EQ(p_cu.size(), p_ref.size());
  EXPECT_TRUE(std::equal(p_ref.begin(), p_ref.begin() + kHeaderBytes, p_cu.begin()));
  std::vector<float> o_ref(n), o_cu(n);
  ASSERT_TRUE(ref::decompress(d, ctx, p_ref, Span<float>(o_ref)).ok());
  ASSERT_TRUE(ref::decompress(d, ctx, p_cu, Span<float>(o_cu)).ok());
  float mx = 0.0f;
  for (float x : o_ref) mx = std::max(mx, std::fabs(x));
  for (std::uint64_t i = 0; i < n; ++i) {
    const double diff = std::fabs(static_cast<double>(o_cu[i]) - o_ref[i]);
    const double floor = 1e-5 * mx;
    ASSERT_LE(diff / std::max<double>(std::fabs(o_ref[i]), floor), 2e-5) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(All, CudaVsRef,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::ValuesIn(kSizes)));

// The device-pointer API on a user stream gives the same bytes as the oracle and decodes them.
TEST(CudaDeviceApi, CompressDecompressOnStream) {
  const std::uint64_t n = 4097;
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  for (const char* c : kCases) {
    const CompressorDesc d = desc_for(c, n);
    SCOPED_TRACE(d.to_string());
    CompressContext ctx;
    ctx.step = 9;
    const std::vector<float> in = fill(n, true, 5);
    std::vector<std::uint8_t> p_ref;
    ASSERT_TRUE(ref::compress(d, ctx, in, p_ref).ok());
    const std::uint64_t cap = cuda::payload_bytes(d);
    float* d_in = nullptr;
    float* d_out = nullptr;
    std::uint8_t* d_p = nullptr;
    ASSERT_EQ(cudaMalloc(&d_in, 4 * n), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_out, 4 * n), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_p, cap), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_in, in.data(), 4 * n, cudaMemcpyHostToDevice), cudaSuccess);
    std::uint64_t size = 0;
    const Status s1 = cuda::compress(d, ctx, d_in, d_p, cap, &size, s);
    ASSERT_TRUE(s1.ok()) << s1.to_string();
    std::vector<std::uint8_t> p(size);
    ASSERT_EQ(cudaMemcpy(p.data(), d_p, size, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_TRUE(p == p_ref);
    const Status s2 = cuda::decompress(d, ctx, d_p, size, d_out, s);
    ASSERT_TRUE(s2.ok()) << s2.to_string();
    std::vector<float> o(n), o_ref(n);
    ASSERT_EQ(cudaMemcpy(o.data(), d_out, 4 * n, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_TRUE(ref::decompress(d, ctx, p_ref, Span<float>(o_ref)).ok());
    EXPECT_TRUE(as_bits(o) == as_bits(o_ref));
    // A payload from another step is rejected and the output is left alone.
    CompressContext other = ctx;
    other.step = 10;
    ASSERT_EQ(cudaMemset(d_out, 0x7f, 4 * n), cudaSuccess);
    EXPECT_EQ(cuda::decompress(d, other, d_p, size, d_out, s).code(), StatusCode::kCorruptPayload);
    ASSERT_EQ(cudaMemcpy(o.data(), d_out, 4 * n, cudaMemcpyDeviceToHost), cudaSuccess);
    for (float x : o) ASSERT_EQ(float_bits(x), 0x7f7f7f7fu);
    cudaFree(d_in);
    cudaFree(d_out);
    cudaFree(d_p);
  }
  cudaStreamDestroy(s);
}

// Bad inputs: the oracle's codes, outputs untouched.
TEST(CudaBadInput, CodesMatchOracle) {
  for (const char* c : kCases) {
    const CompressorDesc d = desc_for(c, 4097);
    SCOPED_TRACE(d.to_string());
    const CompressorOps ops = cuda_impl(d).ops(d.kind);
    CompressContext ctx;
    std::vector<float> in = fill(d.n, true, 6);
    in[2000] = std::nanf("");
    std::vector<std::uint8_t> p_ref, p_cu = {1, 2, 3};
    const Status r = ref::compress(d, ctx, in, p_ref);
    const Status k = ops.compress(d, ctx, in, p_cu);
    EXPECT_EQ(k.code(), r.code()) << k.to_string() << " vs " << r.to_string();
    if (!r.ok()) {
      EXPECT_EQ(p_cu, (std::vector<std::uint8_t>{1, 2, 3}));
      EXPECT_NE(k.message().find("input[2000]"), std::string::npos) << k.message();
    }
    in[2000] = 0.5f;
    ASSERT_TRUE(ref::compress(d, ctx, in, p_ref).ok());
    for (int what = 0; what < 3; ++what) {
      std::vector<std::uint8_t> bad = p_ref;
      if (what == 0) bad[0] ^= 1u;                                      // magic
      if (what == 1) bad.pop_back();                                    // truncated
      if (what == 2 && bad.size() > kHeaderBytes) bad.back() ^= 0x80u;  // body (may be legal)
      std::vector<float> o_ref(d.n, 7.0f), o_cu(d.n, 7.0f);
      const Status sr = ref::decompress(d, ctx, bad, Span<float>(o_ref));
      const Status sk = ops.decompress(d, ctx, bad, Span<float>(o_cu));
      EXPECT_EQ(sk.code(), sr.code()) << what << ": " << sk.to_string() << " vs " << sr.to_string();
      if (!sk.ok()) {
        for (float x : o_cu) ASSERT_EQ(x, 7.0f);
      }
    }
  }
}

// Without a device: the backend declines every descriptor and says why, "any" never picks it,
// and the device API refuses instead of pretending.
TEST(CudaNoDevice, DeclinesWithReason) {
  if (cuda::device_status().available) GTEST_SKIP() << "a CUDA device is present";
  const CompressorDesc d = desc_for("sign", 100);
  EXPECT_FALSE(cuda::device_status().reason.empty());
  EXPECT_NE(cuda::device_status().reason.find("no CUDA device"), std::string::npos);
  auto sel = select_impl(d, "cuda:native");
  ASSERT_FALSE(sel.ok());
  EXPECT_EQ(sel.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(sel.status().message().find("no CUDA device"), std::string::npos)
      << sel.status().message();
  auto any = select_impl(d, "any");
  ASSERT_TRUE(any.ok());
  EXPECT_NE(any.value()->name.rfind("cuda:", 0), 0u) << "'any' picked " << any.value()->name;
  std::uint64_t size = 0;
  const Status s = cuda::compress(d, CompressContext{}, nullptr, nullptr, 0, &size, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  const Status f = cuda::fused_ef_compress(d, CompressContext{}, kk::FusedEfParams{}, nullptr,
                                           nullptr, nullptr, nullptr, 0, &size, nullptr);
  EXPECT_EQ(f.code(), StatusCode::kUnimplemented) << f.to_string();
}

// Which kinds have kernels does not depend on the device.
TEST(CudaNoDevice, ImplementsTable) {
  for (const char* c : kCases) EXPECT_TRUE(cuda::implements(desc_for(c, 10))) << c;
  CompressorDesc d;
  d.kind = CompressorKind::kPowerSgd;
  EXPECT_FALSE(cuda::implements(d)) << "powersgd has no CUDA kernel";
  // The fused EF step covers exactly the compressors that have kernels.
  for (const char* c : kCases) EXPECT_TRUE(cuda::fused_ef_supports(desc_for(c, 10))) << c;
  EXPECT_FALSE(cuda::fused_ef_supports(d)) << "powersgd has no fused CUDA step";
}

}  // namespace
}  // namespace gradcomp
