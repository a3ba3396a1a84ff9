// Launchers of the native CUDA kernels (cu_streaming.cu, cu_select.cu), called by the host
// orchestration in cu_ops.cpp. Plain C++ declarations (no kernel syntax) so that cu_ops.cpp is
// compiled by the host compiler with the project's full warning set. Every launcher enqueues on
// `stream` and returns the launch error; none synchronises unless it says so.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace gradcomp::cuda::detail {

// "First bad position" slots in device memory: kernels atomicMin the element (or word) index of
// the first problem they see, so the host can name the same index as the reference.
enum Slot : int {
  kSlotInput = 0,     // first non-finite input element
  kSlotOverflow = 1,  // first finite input that overflows the output format (fp16/bf16, randk)
  kSlotBody = 2,      // first corrupt body field (decoder checks)
  kSlotCount = 3,     // a counter (threshold: selected elements)
  kSlots = 4
};
constexpr unsigned long long kNoIndex = ~0ull;

// How elements are grouped (sign blocks, QSGD buckets, tensor segments): fixed-size groups of
// `fixed` elements with a shorter last one, or `count` groups with device offsets[count + 1].
struct Groups {
  std::uint64_t n = 0;
  std::uint64_t count = 0;
  std::uint64_t fixed = 0;                 // > 0: fixed size
  const std::uint64_t* offsets = nullptr;  // fixed == 0: device array of count + 1 offsets
  std::uint64_t max_size = 0;              // largest group (tiles per group for reductions)
};

enum class ElemFmt : int { kF32, kF16, kBF16 };
// kSumSqDev: sum of (x - center[group])^2 (TernGrad's two-pass variance).
enum class Reduce : int { kSumAbs, kSumSq, kMaxAbs, kSum, kSumSqDev };
// What to make of a group's double accumulator (rounded once to f32, NaN made canonical).
enum class Finish : int { kMeanL1, kRmsL2, kSqrt, kAsIs };

cudaError_t write_header(const std::uint8_t* header32, std::uint8_t* d_payload, cudaStream_t s);

// Elementwise formats (identity, fp16, bf16; also the dense fallback of the sparsifiers).
cudaError_t elem_encode(ElemFmt f, const float* in, std::uint64_t n, void* body, bool check,
                        unsigned long long* slots, cudaStream_t s);
cudaError_t elem_check(ElemFmt f, const void* body, std::uint64_t n, unsigned long long* slots,
                       cudaStream_t s);
cudaError_t elem_decode(ElemFmt f, const void* body, std::uint64_t n, float* out, bool acc,
                        float alpha, cudaStream_t s);
cudaError_t find_nonfinite(const float* in, std::uint64_t n, unsigned long long* slots,
                           cudaStream_t s);

// Sign bits (sign, blocksign): warp ballots over 16-byte loads.
cudaError_t sign_pack(const float* in, std::uint64_t n, std::uint32_t* words, bool check,
                      unsigned long long* slots, cudaStream_t s);
// out[j] = +-scale of j's group (scales == nullptr: +-1).
cudaError_t sign_decode(const std::uint32_t* words, const float* scales, const Groups& g,
                        float* out, bool acc, float alpha, cudaStream_t s);

// Deterministic per-group reduction in double: fixed 4096-element tiles reduced by a fixed tree,
// then the tiles of a group summed in order. tmp: device scratch of reduce_tmp_doubles(g).
std::uint64_t reduce_tmp_doubles(const Groups& g);
cudaError_t group_reduce(Reduce r, const float* in, const Groups& g, double* tmp, double* acc,
                         cudaStream_t s, const double* center = nullptr);
cudaError_t group_finish(Finish f, const double* acc, const Groups& g, float* scales,
                         cudaStream_t s);
// Checks scales[i] (sign bit clear; finite unless allow_nonfinite) -> kSlotBody = i.
cudaError_t check_scales(const float* scales, std::uint64_t count, bool allow_nonfinite,
                         unsigned long long* slots, cudaStream_t s);
// Checks that the bits of `words` from bit `used_bits` to the end of `nwords` are zero.
cudaError_t check_padding(const std::uint32_t* words, std::uint64_t used_bits, std::uint64_t nwords,
                          unsigned long long* slots, cudaStream_t s);

// QSGD (qsgd): codes of 1 + L bits, one thread per output word, Philox in registers.
struct QsgdParams {
  std::uint32_t levels = 1;
  std::uint32_t bits = 2;  // 1 + L
  std::uint64_t seed = 0;
  std::uint32_t step = 0, tensor_id = 0, rank = 0;
  // Qsparse compositions (qsgd_topk/randk): the k selected values form one bucket; element e's
  // rounding uniform and decoded position are support[e] (its global index). nullptr: e itself.
  const std::uint32_t* support = nullptr;
  double factor = 1.0;  // decoded values times factor (scaled=1: 1/(1+beta)); 1 is exact
};
cudaError_t qsgd_encode(const float* in, const Groups& g, const float* norms, const QsgdParams& p,
                        std::uint32_t* words, cudaStream_t s);
cudaError_t qsgd_check(const std::uint32_t* words, const Groups& g, const float* norms,
                       const QsgdParams& p, unsigned long long* slots, cudaStream_t s);
cudaError_t qsgd_decode(const std::uint32_t* words, const Groups& g, const float* norms,
                        const QsgdParams& p, float* out, bool acc, float alpha, cudaStream_t s);

// TernGrad: 2-bit codes (0 = -1, 1 = 0, 2 = +1), one thread per word of 16 codes; per segment
// the clip bound b and the scaler s (docs/compressors/terngrad.md).
cudaError_t terngrad_encode(const float* in, const Groups& g, const float* bounds,
                            const float* scalers, const QsgdParams& rng, std::uint32_t* words,
                            cudaStream_t s);
// Code 3, or a non-zero code in a segment whose scaler is 0 -> kSlotBody = element.
cudaError_t terngrad_check(const std::uint32_t* words, const Groups& g, const float* scalers,
                           unsigned long long* slots, cudaStream_t s);
cudaError_t terngrad_decode(const std::uint32_t* words, const Groups& g, const float* scalers,
                            float* out, bool acc, float alpha, cudaStream_t s);

// Sparse lists: body = count u32 indices then count f32 values.
// out = 0 (decompress) or out = f32(out + alpha * 0) (accumulate) for every element, then the
// (index, value) pairs scattered/accumulated.
cudaError_t sparse_decode(const std::uint32_t* idx, const float* val, std::uint64_t count,
                          std::uint64_t n, float* out, bool acc, float alpha, cudaStream_t s);
// idx strictly increasing and < n -> kSlotBody = first bad position.
cudaError_t check_indices(const std::uint32_t* idx, std::uint64_t count, std::uint64_t n,
                          unsigned long long* slots, cudaStream_t s);
// Values: finite (unless allow_nonfinite) and, if thr >= 0, |v| > thr (threshold): kSlotBody.
cudaError_t check_values(const float* val, std::uint64_t count, bool allow_nonfinite, double thr,
                         unsigned long long* slots, cudaStream_t s);
// vals[i] = f32(in[idx[i]] * scale) (scale in double); overflow to Inf -> kSlotOverflow = i.
cudaError_t gather(const float* in, const std::uint32_t* idx, std::uint64_t count, double scale,
                   bool check, float* vals, unsigned long long* slots, cudaStream_t s);

// Exact top-k (CUB radix sort of |x| descending, stable: ties keep the lower index), indices
// written sorted ascending to idx_out[k]. Allocates its scratch with cudaMallocAsync.
cudaError_t topk_indices(const float* in, std::uint64_t n, std::uint64_t k, std::uint32_t* idx_out,
                         cudaStream_t s);
// Threshold selection |x| > thr (double compare) with cub::DeviceSelect: writes the selected
// indices in increasing order to idx_out (capacity n) and their number to *d_count (device).
cudaError_t threshold_select(const float* in, std::uint64_t n, double thr, std::uint32_t* idx_out,
                             std::uint64_t* d_count, cudaStream_t s);
// Dense threshold body: out[j] = |x_j| > thr ? x_j : +0.
cudaError_t threshold_dense(const float* in, std::uint64_t n, double thr, float* out,
                            cudaStream_t s);
// Dense threshold check: every entry +0 or |x| > thr (and finite unless allowed) -> kSlotBody;
// the number of selected entries is added to slots[kSlotCount].
cudaError_t threshold_dense_check(const float* body, std::uint64_t n, double thr,
                                  bool allow_nonfinite, unsigned long long* slots, cudaStream_t s);
// Floyd draws of random-k: t[i] = uniform_below(j + 1, j), j = n - k + i (Philox per element).
cudaError_t randk_draws(std::uint64_t seed, std::uint32_t step, std::uint32_t tensor_id,
                        std::uint32_t who, std::uint64_t n, std::uint64_t k, std::uint64_t* t,
                        cudaStream_t s);

// DGC (dgc selection=code): samples out[i] = |in[off + i * stride]|, i < m.
cudaError_t strided_abs(const float* in, std::uint64_t off, std::uint64_t stride, std::uint64_t m,
                        float* out, cudaStream_t s);
// Ordered compaction without CUB, in tiles of 4096 positions: compact_count writes each tile's
// number of matches (compact_tiles(m) u32), the host scans them, compact_write emits the
// matches in position order from tile_offsets[tile], keeping the first `limit`.
//   kDgcCandidates: positions j < m with |in[j]| >= thr (NaN above every number), emits j.
//   kNonZero: positions i < m with in[idx[i]] != 0, emits idx[i].
enum class Compact : int { kDgcCandidates, kNonZero };
struct CompactArgs {
  Compact mode = Compact::kDgcCandidates;
  const float* in = nullptr;
  float thr = 0.0f;
  const std::uint32_t* idx = nullptr;
  std::uint64_t m = 0;
};
std::uint64_t compact_tiles(std::uint64_t m);
cudaError_t compact_count(const CompactArgs& a, std::uint32_t* tile_counts, cudaStream_t s);
cudaError_t compact_write(const CompactArgs& a, const std::uint64_t* tile_offsets,
                          std::uint64_t limit, std::uint32_t* out, cudaStream_t s);
// val[i] == 0 (either sign) -> kSlotBody = i (DGC never sends zeros).
cudaError_t check_nonzero(const float* val, std::uint64_t count, unsigned long long* slots,
                          cudaStream_t s);

// Fused error feedback (cuda::fused_ef_compress): the step's scalars as the kernels see them.
struct FusedStep {
  int form = 0;  // MomentumForm: 0 none, 1 heavy ball, 2 Nesterov, 3 EMA
  double mu = 0.0;
  bool inside = false;  // lr inside
  double eta = 1.0;
  double rescale = 1.0;  // outside_rescale: eta_{t-1} / eta_t (1 on the first step)
  bool ef = true;
  // payload body: 0 f32, 1 f16, 2 bf16, 3 sign bits (x scales); 4 none: p already holds
  // e' = f32(p - D) (the compressor's decompress_accumulate with alpha = -1 ran on it)
  int decode = 0;
};
// Sweep A: p = S2-S4(g, m, e) into p; a non-finite g -> kSlotInput = first index.
cudaError_t fused_p(const FusedStep& st, const float* g, const float* m, const float* e,
                    std::uint64_t n, float* p, unsigned long long* slots, cudaStream_t s);
// Sweep B: m' and e' = f32(p - D(C(p))), D decoded inline from `body` (groups: the sign blocks
// of `scales`; scales == nullptr: +-1).
cudaError_t fused_update(const FusedStep& st, const float* g, float* m, float* e, const float* p,
                         const void* body, const float* scales, const Groups& groups,
                         cudaStream_t s);

}  // namespace gradcomp::cuda::detail
