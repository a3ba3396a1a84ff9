// cuda::fused_ef_compress against the unfused reference composition kk::fused_ef_reference_step
// (fused_ef_reference.hpp: the worker stage of reference/ref_opt_sync.cpp, S2-S4, +
// ref::compress / ref::decompress, S5, + e = f32(p - q), S6), compared bitwise (payload, momentum,
// error) over several steps, for every momentum form, lr placement and EF setting. Needs a CUDA
// device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/dtype.hpp"
#include "gradcomp/kernels/cuda.hpp"
#include "gradcomp/kernels/fused_ef_reference.hpp"
#include "gradcomp/rng.hpp"

namespace gradcomp {
namespace {

using kk::FusedEfParams;

// General floats of mixed magnitude, or quarters in [-1.75, 1.75] (dyadic: every block sum and
// sum of squares is exact in double, so any reduction order gives the oracle's scale).
std::vector<float> grad_data(std::uint64_t n, std::uint32_t salt, bool dyadic = false) {
  const RngStream rng(77, RngPurpose::kTestData, salt, 0, 0);
  std::vector<float> v(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const Philox4x32 w = rng.words(i);
    v[i] = dyadic ? static_cast<float>(static_cast<int>(w.v[0] % 15u) - 7) * 0.25f
                  : (RngStream::to_unit_float(w.v[0]) - 0.5f) *
                        std::ldexp(1.0f, static_cast<int>(w.v[1] % 8u) - 4);
  }
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

CompressorDesc desc_of(const std::string& c, std::uint64_t n) {
  auto d = parse_compressor(c + (c.find(':') == std::string::npos ? ":" : ",") +
                            "n=" + std::to_string(n));
  EXPECT_TRUE(d.ok()) << c;
  return d.value();
}

// Device buffers of one worker's state.
struct DevState {
  float *g = nullptr, *m = nullptr, *e = nullptr;
  std::uint8_t* p = nullptr;
  explicit DevState(std::uint64_t n, std::uint64_t cap) {
    EXPECT_EQ(cudaMalloc(&g, 4 * n + 4), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&m, 4 * n + 4), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&e, 4 * n + 4), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&p, cap), cudaSuccess);
  }
  ~DevState() {
    cudaFree(g);
    cudaFree(m);
    cudaFree(e);
    cudaFree(p);
  }
  std::vector<float> get(const float* d, std::uint64_t n) const {
    std::vector<float> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), d, 4 * n, cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

void run_steps(const std::string& text, std::uint64_t n, FusedEfParams pa, int steps,
               bool dyadic = false) {
  const CompressorDesc d = desc_of(text, n);
  SCOPED_TRACE(d.to_string() + " form " + std::to_string(int(pa.momentum_form)) + " lr " +
               std::to_string(int(pa.lr_placement)) + " ef " + std::to_string(pa.error_feedback));
  ASSERT_TRUE(cuda::fused_ef_supports(d));
  const std::uint64_t cap = cuda::payload_bytes(d);
  DevState ds(n, cap);
  ASSERT_EQ(cudaMemset(ds.m, 0, 4 * n + 4), cudaSuccess);
  ASSERT_EQ(cudaMemset(ds.e, 0, 4 * n + 4), cudaSuccess);
  std::vector<float> mr(n, 0.0f), er(n, 0.0f);
  const bool has_m = pa.momentum_form != MomentumForm::kNone;
  for (int t = 0; t < steps; ++t) {
    const std::vector<float> g = grad_data(n, 100 + static_cast<std::uint32_t>(t), dyadic);
    pa.has_lr_prev = t > 0;
    pa.lr_prev = pa.lr;
    pa.lr = 0.1 / (1.0 + 0.5 * t);  // decaying, so the rescale factor matters
    const CompressContext ctx{static_cast<std::uint32_t>(t), 0, 1, {}, nullptr};
    std::vector<std::uint8_t> pr;
    ASSERT_TRUE(kk::fused_ef_reference_step(d, ctx, pa, g, mr, er, pr).ok());
    ASSERT_EQ(cudaMemcpy(ds.g, g.data(), 4 * n, cudaMemcpyHostToDevice), cudaSuccess);
    std::uint64_t size = 0;
    const Status s =
        cuda::fused_ef_compress(d, ctx, pa, ds.g, has_m ? ds.m : nullptr,
                                pa.error_feedback ? ds.e : nullptr, ds.p, cap, &size, nullptr);
    ASSERT_TRUE(s.ok()) << s.to_string();
    std::vector<std::uint8_t> pk(size);
    ASSERT_EQ(cudaMemcpy(pk.data(), ds.p, size, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_TRUE(pk == pr) << "payload differs at step " << t;
    if (has_m) {
      ASSERT_TRUE(same_bits(ds.get(ds.m, n), mr)) << "momentum differs at step " << t;
    }
    if (pa.error_feedback) {
      ASSERT_TRUE(same_bits(ds.get(ds.e, n), er)) << "error differs at step " << t;
    }
  }
}

// The reduction-free compressors (blocksign without scales included): bitwise on any data.
TEST(CudaFused, EveryFormAndPlacement) {
  for (const char* c : {"identity", "fp16", "bf16", "sign", "blocksign:scale=none,block=7"}) {
    for (std::uint64_t n : {1ull, 33ull, 4097ull}) {
      for (int form = 0; form < 4; ++form) {
        for (LrPlacement lr : {LrPlacement::kInside, LrPlacement::kOutsideRescale}) {
          for (bool ef : {true, false}) {
            FusedEfParams pa;
            pa.momentum_form = static_cast<MomentumForm>(form);
            pa.momentum = 0.9;
            pa.lr_placement = lr;
            pa.error_feedback = ef;
            run_steps(c, n, pa, 3);
          }
        }
      }
    }
  }
}

// Compressors without an inline decoder (their decompress_accumulate with alpha = -1 forms e'),
// the reduction-free ones so that every bit is comparable on general data: sparse selections and
// block sparsifiers.
TEST(CudaFused, SparseAndBlockCompressors) {
  for (const char* c : {"topk:density=0.05", "topk:k=3", "dgc:density=0.01", "threshold:tau=0.01",
                        "randk:density=0.1", "randk:density=0.1,indices=private,rescale=unbiased",
                        "grbs:rho0=0.25", "rbgs:density=0.1", "rbgs:density=0.2,align=partition"}) {
    for (std::uint64_t n : {1ull, 33ull, 4097ull}) {
      for (int form = 0; form < 4; ++form) {
        FusedEfParams pa;
        pa.momentum_form = static_cast<MomentumForm>(form);
        pa.momentum = 0.9;
        pa.lr_placement = form % 2 ? LrPlacement::kInside : LrPlacement::kOutsideRescale;
        run_steps(c, n, pa, 3);
      }
    }
  }
}

// Blocksign with scales: the device's tree reduction equals the oracle's index-order sum only
// when the sums are exact, so one step of p = g on dyadic data (no momentum, lr outside, e = 0):
// payload (scales included) and e' bitwise.
TEST(CudaFused, BlocksignScaled) {
  FusedEfParams pa;
  pa.lr_placement = LrPlacement::kOutside;
  for (const char* c : {"blocksign", "blocksign:block=256,scale=l2", "blocksign:block=tensor"}) {
    for (std::uint64_t n : {31ull, 4097ull, (1ull << 20) + 3}) run_steps(c, n, pa, 1, true);
  }
}

// A NaN gradient: kNonFinite naming grad[i]; momentum and error untouched.
TEST(CudaFused, NonFiniteGradientLeavesStateAlone) {
  const std::uint64_t n = 4097;
  const CompressorDesc d = desc_of("sign", n);
  FusedEfParams pa;
  pa.momentum_form = MomentumForm::kHeavyBall;
  pa.momentum = 0.9;
  const std::uint64_t cap = cuda::payload_bytes(d);
  DevState ds(n, cap);
  std::vector<float> g = grad_data(n, 1);
  g[1234] = std::nanf("");
  ASSERT_EQ(cudaMemcpy(ds.g, g.data(), 4 * n, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(ds.m, 0x11, 4 * n), cudaSuccess);
  ASSERT_EQ(cudaMemset(ds.e, 0x22, 4 * n), cudaSuccess);
  std::uint64_t size = 0;
  const Status s = cuda::fused_ef_compress(d, {}, pa, ds.g, ds.m, ds.e, ds.p, cap, &size, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite);
  EXPECT_NE(s.message().find("grad[1234]"), std::string::npos) << s.message();
  for (float x : ds.get(ds.m, n)) ASSERT_EQ(float_bits(x), 0x11111111u);
  for (float x : ds.get(ds.e, n)) ASSERT_EQ(float_bits(x), 0x22222222u);
  // Unsupported compressors and a short payload are argument errors.
  EXPECT_EQ(cuda::fused_ef_compress(desc_of("qsgd", n), {}, pa, ds.g, ds.m, ds.e, ds.p, cap, &size,
                                    nullptr)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      cuda::fused_ef_compress(d, {}, pa, ds.g, ds.m, ds.e, ds.p, cap - 1, &size, nullptr).code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gradcomp
