// Native CUDA kernels of the streaming compressors and the sparse-list helpers (cu_launch.hpp).
// No CUB here (that lives in cu_select.cu, which is the slow file to compile).
//
// Exactness: the target compiles with --fmad=false, so a*b+c is never contracted into an FMA
// and every double/float expression rounds like the reference's. Reductions use a fixed tree
// (deterministic run to run); they equal the reference's index-order sums whenever those sums
// are exact (the exact fills), and are within the reduction_f32 tolerance otherwise.
#include <cstdint>

#include "cu_launch.hpp"
#include "gradcomp/dtype.hpp"
#include "gradcomp/rng.hpp"

namespace gradcomp::cuda::detail {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 256;
constexpr std::uint64_t kTile = 4096;  // elements per reduction tile

unsigned grid_for(std::uint64_t items, std::uint64_t per_block = kThreads) {
  std::uint64_t b = (items + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > 65535) b = 65535;  // grid-stride loops cover the rest
  return static_cast<unsigned>(b);
}

__device__ __forceinline__ std::uint64_t tid() {
  return static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::uint64_t nthreads() {
  return static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
}
__device__ __forceinline__ bool nonfinite(float x) {
  return (float_bits(x) & 0x7F800000u) == 0x7F800000u;
}
__device__ __forceinline__ void note(unsigned long long* slots, int slot, std::uint64_t i) {
  atomicMin(slots + slot, static_cast<unsigned long long>(i));
}
// out = v, or out = f32(f64(out) + f64(alpha) * f64(v)) exactly like the registry's reference
// accumulate (no FMA: --fmad=false).
__device__ __forceinline__ void put(float* out, std::uint64_t i, float v, bool acc, double a) {
  out[i] = acc ? static_cast<float>(static_cast<double>(out[i]) + a * static_cast<double>(v)) : v;
}

__device__ __forceinline__ std::uint64_t group_begin(const Groups& g, std::uint64_t b) {
  return g.fixed ? b * g.fixed : g.offsets[b];
}
__device__ __forceinline__ std::uint64_t group_end(const Groups& g, std::uint64_t b) {
  if (!g.fixed) return g.offsets[b + 1];
  const std::uint64_t e = (b + 1) * g.fixed;
  return e < g.n ? e : g.n;
}
__device__ __forceinline__ std::uint64_t group_of(const Groups& g, std::uint64_t i) {
  if (g.fixed) return i / g.fixed;
  std::uint64_t lo = 0, hi = g.count;  // largest b with offsets[b] <= i (groups are non-empty)
  while (hi - lo > 1) {
    const std::uint64_t mid = (lo + hi) / 2;
    if (g.offsets[mid] <= i) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

__global__ void header_k(Philox4x32 a, Philox4x32 b, std::uint8_t* dst) {
  // 32 header bytes passed by value as eight words (little-endian host layout).
  const unsigned t = threadIdx.x;
  if (t < 8) {
    const std::uint32_t w = t < 4 ? a.v[t] : b.v[t - 4];
    for (int k = 0; k < 4; ++k) dst[4 * t + k] = static_cast<std::uint8_t>(w >> (8 * k));
  }
}

// ---- elementwise formats --------------------------------------------------------------------

template <ElemFmt F>
__device__ __forceinline__ void enc1(float x, void* body, std::uint64_t i, bool check,
                                     unsigned long long* slots) {
  if constexpr (F == ElemFmt::kF32) {
    static_cast<float*>(body)[i] = x;
    if (check && nonfinite(x)) note(slots, kSlotInput, i);
  } else {
    const std::uint16_t h = F == ElemFmt::kF16 ? float_to_f16_bits(x) : float_to_bf16_bits(x);
    static_cast<std::uint16_t*>(body)[i] = h;
    if (check) {
      const bool h_inf = F == ElemFmt::kF16 ? (h & 0x7C00u) == 0x7C00u : (h & 0x7F80u) == 0x7F80u;
      if (nonfinite(x)) {
        note(slots, kSlotInput, i);
      } else if (h_inf) {
        note(slots, kSlotOverflow, i);
      }
    }
  }
}

template <ElemFmt F>
__device__ __forceinline__ float dec1(const void* body, std::uint64_t i) {
  if constexpr (F == ElemFmt::kF32) {
    return static_cast<const float*>(body)[i];
  } else if constexpr (F == ElemFmt::kF16) {
    return f16_bits_to_float(static_cast<const std::uint16_t*>(body)[i]);
  } else {
    return bf16_bits_to_float(static_cast<const std::uint16_t*>(body)[i]);
  }
}

// 16-byte loads of four inputs per thread when `in` is 16-byte aligned, scalar tail.
template <ElemFmt F>
__global__ void elem_encode_k(const float* __restrict__ in, std::uint64_t n,
                              void* __restrict__ body, bool check, unsigned long long* slots,
                              bool vec) {
  const std::uint64_t nq = vec ? n / 4 : 0;
  for (std::uint64_t q = tid(); q < nq; q += nthreads()) {
    const float4 v = reinterpret_cast<const float4*>(in)[q];
    if constexpr (F == ElemFmt::kF32) {
      reinterpret_cast<float4*>(body)[q] = v;
      if (check && (nonfinite(v.x) || nonfinite(v.y) || nonfinite(v.z) || nonfinite(v.w))) {
        if (nonfinite(v.x)) note(slots, kSlotInput, 4 * q);
        if (nonfinite(v.y)) note(slots, kSlotInput, 4 * q + 1);
        if (nonfinite(v.z)) note(slots, kSlotInput, 4 * q + 2);
        if (nonfinite(v.w)) note(slots, kSlotInput, 4 * q + 3);
      }
    } else {
      enc1<F>(v.x, body, 4 * q, check, slots);
      enc1<F>(v.y, body, 4 * q + 1, check, slots);
      enc1<F>(v.z, body, 4 * q + 2, check, slots);
      enc1<F>(v.w, body, 4 * q + 3, check, slots);
    }
  }
  for (std::uint64_t i = 4 * nq + tid(); i < n; i += nthreads())
    enc1<F>(in[i], body, i, check, slots);
}

template <ElemFmt F>
__global__ void elem_check_k(const void* __restrict__ body, std::uint64_t n,
                             unsigned long long* slots) {
  for (std::uint64_t i = tid(); i < n; i += nthreads()) {
    if (nonfinite(dec1<F>(body, i))) note(slots, kSlotBody, i);
  }
}

template <ElemFmt F>
__global__ void elem_decode_k(const void* __restrict__ body, std::uint64_t n, float* out, bool acc,
                              double alpha, bool vec) {
  const std::uint64_t nq = vec ? n / 4 : 0;
  for (std::uint64_t q = tid(); q < nq; q += nthreads()) {
    if constexpr (F == ElemFmt::kF32) {
      if (!acc) {
        reinterpret_cast<float4*>(out)[q] = reinterpret_cast<const float4*>(body)[q];
        continue;
      }
    }
    for (int j = 0; j < 4; ++j) put(out, 4 * q + j, dec1<F>(body, 4 * q + j), acc, alpha);
  }
  for (std::uint64_t i = 4 * nq + tid(); i < n; i += nthreads()) {
    put(out, i, dec1<F>(body, i), acc, alpha);
  }
}

__global__ void find_nonfinite_k(const float* __restrict__ in, std::uint64_t n,
                                 unsigned long long* slots) {
  for (std::uint64_t i = tid(); i < n; i += nthreads()) {
    if (nonfinite(in[i])) note(slots, kSlotInput, i);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// ---- sign bits --------------------------------------------------------------------------------

// Bit u of byte x moves to bit 4u (u = 0..7).
__device__ __forceinline__ std::uint32_t spread4(std::uint32_t x) {
  x &= 0xffu;
  x = (x | (x << 12)) & 0x000F000Fu;
  x = (x | (x << 6)) & 0x03030303u;
  x = (x | (x << 3)) & 0x11111111u;
  return x;
}

// One warp packs 128 elements (4 words) per iteration: lane t holds elements 4t..4t+3 (one
// 16-byte load), four ballots give bit t of b[j] = sign of element 4t + j, and lane w < 4
// interleaves byte w of the four ballots into word w. Elements past n count as +0: the padding
// bits come out zero.
__global__ void sign_pack_k(const float* __restrict__ in, std::uint64_t n, std::uint32_t* words,
                            bool check, unsigned long long* slots, bool vec) {
  const unsigned lane = threadIdx.x & 31u;
  const std::uint64_t warp = tid() >> 5, nwarps = nthreads() >> 5;
  const std::uint64_t nchunks = (n + 127) / 128, nwords = (n + 31) / 32;
  for (std::uint64_t c = warp; c < nchunks; c += nwarps) {
    const std::uint64_t base = c * 128 + 4 * lane;
    float x[4];
    if (vec && c * 128 + 128 <= n) {
      const float4 v = reinterpret_cast<const float4*>(in)[base / 4];
      x[0] = v.x;
      x[1] = v.y;
      x[2] = v.z;
      x[3] = v.w;
    } else {
      for (int j = 0; j < 4; ++j) x[j] = base + j < n ? in[base + j] : 0.0f;
    }
    std::uint32_t b[4];
    bool bad = false;
    for (int j = 0; j < 4; ++j) {
      b[j] = __ballot_sync(kFull, x[j] < 0.0f);
      bad |= nonfinite(x[j]);
    }
    if (lane < 4) {
      const std::uint64_t w = c * 4 + lane;
      if (w < nwords) {
        const unsigned sh = 8 * lane;
        words[w] = spread4(b[0] >> sh) | (spread4(b[1] >> sh) << 1) | (spread4(b[2] >> sh) << 2) |
                   (spread4(b[3] >> sh) << 3);
      }
    }
    if (check && __any_sync(kFull, bad)) {
      for (int j = 0; j < 4; ++j) {
        if (base + j < n && nonfinite(x[j])) note(slots, kSlotInput, base + j);
      }
    }
  }
}

__device__ __forceinline__ float flip(float s, std::uint32_t bit) {
  return bits_float(float_bits(s) ^ ((bit & 1u) << 31));
}

__global__ void sign_decode_k(const std::uint32_t* __restrict__ words,
                              const float* __restrict__ scales, Groups g, float* out, bool acc,
                              double alpha) {
  for (std::uint64_t i = tid(); i < g.n; i += nthreads()) {
    const float s = scales ? scales[group_of(g, i)] : 1.0f;
    put(out, i, flip(s, words[i / 32] >> (i % 32)), acc, alpha);
  }
}

// ---- deterministic group reductions -----------------------------------------------------------

template <Reduce R>
__device__ __forceinline__ double combine(double acc, double v) {
  if constexpr (R == Reduce::kMaxAbs) {
    if (acc != acc || v != v) return __longlong_as_double(0x7FF8000000000000ll);
    return v > acc ? v : acc;
  } else {
    return acc + v;
  }
}
template <Reduce R>
__device__ __forceinline__ double term(float x, double center) {
  const double d = static_cast<double>(x);
  if constexpr (R == Reduce::kSumSq) {
    return d * d;
  } else if constexpr (R == Reduce::kSum) {
    return d;
  } else if constexpr (R == Reduce::kSumSqDev) {
    const double dev = d - center;
    return dev * dev;
  } else {
    return fabs(d);
  }
}

template <Reduce R>
__global__ void tile_reduce_k(const float* __restrict__ in, Groups g, std::uint64_t tiles_per_group,
                              double* tmp, const double* __restrict__ center) {
  __shared__ double sh[kThreads];
  const std::uint64_t ntiles = g.count * tiles_per_group;
  for (std::uint64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const std::uint64_t b = tile / tiles_per_group, t = tile % tiles_per_group;
    const std::uint64_t gb = group_begin(g, b), ge = group_end(g, b);
    const std::uint64_t lo = gb + t * kTile;
    const std::uint64_t hi = lo + kTile < ge ? lo + kTile : ge;
    const double c = center ? center[b] : 0.0;
    double acc = 0.0;
    for (std::uint64_t i = lo + threadIdx.x; i < hi; i += kThreads)
      acc = combine<R>(acc, term<R>(in[i], c));
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (static_cast<int>(threadIdx.x) < w)
        sh[threadIdx.x] = combine<R>(sh[threadIdx.x], sh[threadIdx.x + w]);
      __syncthreads();
    }
    if (threadIdx.x == 0) tmp[tile] = sh[0];
    __syncthreads();  // sh is reused by the next tile of this block
  }
}

template <Reduce R>
__global__ void group_sum_k(const double* __restrict__ tmp, Groups g, std::uint64_t tiles_per_group,
                            double* acc) {
  for (std::uint64_t b = tid(); b < g.count; b += nthreads()) {
    double a = 0.0;
    for (std::uint64_t t = 0; t < tiles_per_group; ++t)
      a = combine<R>(a, tmp[b * tiles_per_group + t]);
    acc[b] = a;
  }
}

__global__ void group_finish_k(Finish f, const double* __restrict__ acc, Groups g, float* scales) {
  for (std::uint64_t b = tid(); b < g.count; b += nthreads()) {
    const double a = acc[b];
    const double d = static_cast<double>(group_end(g, b) - group_begin(g, b));
    float s;
    switch (f) {
      case Finish::kMeanL1: s = static_cast<float>(a / d); break;
      case Finish::kRmsL2: s = static_cast<float>(sqrt(a) / sqrt(d)); break;
      case Finish::kSqrt: s = static_cast<float>(sqrt(a)); break;
      default: s = static_cast<float>(a); break;
    }
    if (s != s) s = bits_float(0x7FC00000u);  // canonical NaN on the wire
    scales[b] = s;
  }
}

__global__ void check_scales_k(const float* __restrict__ s, std::uint64_t count, bool allow,
                               unsigned long long* slots) {
  for (std::uint64_t i = tid(); i < count; i += nthreads()) {
    const std::uint32_t u = float_bits(s[i]);
    if ((u >> 31) != 0 || (!allow && nonfinite(s[i]))) note(slots, kSlotBody, i);
  }
}

__global__ void check_padding_k(const std::uint32_t* __restrict__ words, std::uint64_t used_bits,
                                std::uint64_t nwords, unsigned long long* slots) {
  for (std::uint64_t w = used_bits / 32 + tid(); w < nwords; w += nthreads()) {
    std::uint32_t mask = 0xffffffffu;
    if (w == used_bits / 32)
      mask = (used_bits % 32) ? (0xffffffffu << (used_bits % 32)) : 0xffffffffu;
    if (words[w] & mask) note(slots, kSlotBody, w);
  }
}

// ---- QSGD ------------------------------------------------------------------------------------

// The reference's quantizer (ref_qsgd_common.hpp), line for line.
__device__ __forceinline__ std::uint32_t quantize(float v, float norm, std::uint32_t levels,
                                                  float u) {
  if (norm == 0.0f) return 0;
  const double s = static_cast<double>(levels);
  const double r = s * fabs(static_cast<double>(v)) / static_cast<double>(norm);
  std::uint32_t level;
  if (r != r || r >= s) {
    level = levels;
  } else {
    const double l = floor(r);
    const double p = r - l;
    level = static_cast<std::uint32_t>(l) + (static_cast<double>(u) < p ? 1u : 0u);
  }
  const std::uint32_t sign = (v < 0.0f && level > 0) ? 1u : 0u;
  return sign | (level << 1);
}

__device__ __forceinline__ std::uint32_t read_field(const std::uint32_t* words, std::uint64_t e,
                                                    std::uint32_t bits) {
  const std::uint64_t pos = e * bits;
  const std::uint64_t w = pos / 32;
  const std::uint32_t sh = static_cast<std::uint32_t>(pos % 32);
  std::uint32_t v = words[w] >> sh;
  if (sh + bits > 32) v |= words[w + 1] << (32 - sh);
  return v & ((1u << bits) - 1u);
}

// One thread per output word: it quantizes every element whose field overlaps the word (an
// element straddling two words is quantized by both threads, with the same Philox draw).
__global__ void qsgd_encode_k(const float* __restrict__ in, Groups g,
                              const float* __restrict__ norms, QsgdParams p, std::uint32_t* words) {
  const RngStream rng(p.seed, RngPurpose::kQsgdRounding, p.step, p.tensor_id, p.rank);
  const std::uint64_t nwords = (g.n * p.bits + 31) / 32;
  for (std::uint64_t w = tid(); w < nwords; w += nthreads()) {
    const std::uint64_t first = (32 * w) / p.bits;
    std::uint64_t last = (32 * w + 31) / p.bits;
    if (last >= g.n) last = g.n - 1;
    std::uint32_t word = 0;
    for (std::uint64_t e = first; e <= last; ++e) {
      const std::uint32_t code = quantize(in[e], norms[group_of(g, e)], p.levels,
                                          rng.uniform_float(p.support ? p.support[e] : e));
      const std::int64_t shift =
          static_cast<std::int64_t>(e * p.bits) - static_cast<std::int64_t>(32 * w);
      word |= shift >= 0 ? code << shift : code >> (-shift);
    }
    words[w] = word;
  }
}

__global__ void qsgd_check_k(const std::uint32_t* __restrict__ words, Groups g,
                             const float* __restrict__ norms, QsgdParams p,
                             unsigned long long* slots) {
  for (std::uint64_t e = tid(); e < g.n; e += nthreads()) {
    const std::uint32_t code = read_field(words, e, p.bits);
    const std::uint32_t level = code >> 1;
    const bool bad = level > p.levels || (level == 0 && (code & 1u)) ||
                     (level != 0 && norms[group_of(g, e)] == 0.0f);
    if (bad) note(slots, kSlotBody, e);
  }
}

__global__ void qsgd_decode_k(const std::uint32_t* __restrict__ words, Groups g,
                              const float* __restrict__ norms, QsgdParams p, float* out, bool acc,
                              double alpha) {
  for (std::uint64_t e = tid(); e < g.n; e += nthreads()) {
    const std::uint32_t code = read_field(words, e, p.bits);
    const double level = static_cast<double>(code >> 1);
    const double signed_level = (code & 1u) ? -level : level;
    // Left to right like the reference: N * (+-level) / s * factor.
    const float v = static_cast<float>(static_cast<double>(norms[group_of(g, e)]) * signed_level /
                                       static_cast<double>(p.levels) * p.factor);
    put(out, p.support ? p.support[e] : e, v, acc, alpha);
  }
}

// ---- TernGrad --------------------------------------------------------------------------------

// The reference's rule line for line: clip to the f32 bound b, keep iff u * s < |g| in double.
__global__ void terngrad_encode_k(const float* __restrict__ in, Groups g,
                                  const float* __restrict__ bounds,
                                  const float* __restrict__ scalers, QsgdParams p,
                                  std::uint32_t* words) {
  const RngStream rng(p.seed, RngPurpose::kTernGradRounding, p.step, p.tensor_id, p.rank);
  const std::uint64_t nwords = (g.n + 15) / 16;
  for (std::uint64_t w = tid(); w < nwords; w += nthreads()) {
    std::uint32_t word = 0;
    const std::uint64_t e1 = 16 * w + 16 < g.n ? 16 * w + 16 : g.n;
    for (std::uint64_t e = 16 * w; e < e1; ++e) {
      const std::uint64_t seg = group_of(g, e);
      const float b = bounds[seg], s = scalers[seg];
      float x = in[e];
      if (x > b) x = b;
      if (x < -b) x = -b;
      const double u = static_cast<double>(rng.uniform_float(e));
      const bool keep = u * static_cast<double>(s) < fabs(static_cast<double>(x));
      const std::uint32_t code = keep ? (x < 0.0f ? 0u : 2u) : 1u;
      word |= code << (2 * (e - 16 * w));
    }
    words[w] = word;
  }
}

__global__ void terngrad_check_k(const std::uint32_t* __restrict__ words, Groups g,
                                 const float* __restrict__ scalers, unsigned long long* slots) {
  for (std::uint64_t e = tid(); e < g.n; e += nthreads()) {
    const std::uint32_t code = (words[e / 16] >> (2 * (e % 16))) & 3u;
    if (code == 3u || (code != 1u && scalers[group_of(g, e)] == 0.0f)) note(slots, kSlotBody, e);
  }
}

__global__ void terngrad_decode_k(const std::uint32_t* __restrict__ words, Groups g,
                                  const float* __restrict__ scalers, float* out, bool acc,
                                  double alpha) {
  for (std::uint64_t e = tid(); e < g.n; e += nthreads()) {
    const std::uint32_t code = (words[e / 16] >> (2 * (e % 16))) & 3u;
    const float t = code == 0u ? -1.0f : (code == 2u ? 1.0f : 0.0f);
    put(out, e, scalers[group_of(g, e)] * t, acc, alpha);
  }
}

// ---- sparse lists ------------------------------------------------------------------------------

__global__ void prefill_k(float* out, std::uint64_t n, bool acc, double alpha) {
  for (std::uint64_t i = tid(); i < n; i += nthreads()) put(out, i, 0.0f, acc, alpha);
}

__global__ void scatter_k(const std::uint32_t* __restrict__ idx, const float* __restrict__ val,
                          std::uint64_t count, float* out, bool acc, double alpha) {
  for (std::uint64_t i = tid(); i < count; i += nthreads()) {
    // Accumulate: out[j] already holds f32(out + alpha * 0), which only differs from out for -0,
    // and -0 + x == +0 + x for every x != 0; so one more put gives the reference's value.
    put(out, idx[i], val[i], acc, alpha);
  }
}

__global__ void check_indices_k(const std::uint32_t* __restrict__ idx, std::uint64_t count,
                                std::uint64_t n, unsigned long long* slots) {
  for (std::uint64_t i = tid(); i < count; i += nthreads()) {
    if (idx[i] >= n || (i > 0 && idx[i] <= idx[i - 1])) note(slots, kSlotBody, i);
  }
}

__global__ void check_values_k(const float* __restrict__ val, std::uint64_t count, bool allow,
                               double thr, unsigned long long* slots) {
  for (std::uint64_t i = tid(); i < count; i += nthreads()) {
    const float v = val[i];
    const bool bad =
        (!allow && nonfinite(v)) || (thr >= 0.0 && !(fabs(static_cast<double>(v)) > thr));
    if (bad) note(slots, kSlotBody, i);
  }
}

__global__ void gather_k(const float* __restrict__ in, const std::uint32_t* __restrict__ idx,
                         std::uint64_t count, double scale, bool check, float* vals,
                         unsigned long long* slots) {
  for (std::uint64_t i = tid(); i < count; i += nthreads()) {
    const float v = static_cast<float>(static_cast<double>(in[idx[i]]) * scale);
    vals[i] = v;
    if (check && nonfinite(v)) note(slots, kSlotOverflow, i);
  }
}

__global__ void threshold_dense_k(const float* __restrict__ in, std::uint64_t n, double thr,
                                  float* out) {
  for (std::uint64_t i = tid(); i < n; i += nthreads()) {
    const float v = in[i];
    out[i] = fabs(static_cast<double>(v)) > thr ? v : 0.0f;
  }
}

__global__ void threshold_dense_check_k(const float* __restrict__ body, std::uint64_t n, double thr,
                                        bool allow, unsigned long long* slots) {
  unsigned long long selected = 0;
  for (std::uint64_t i = tid(); i < n; i += nthreads()) {
    const float v = body[i];
    if (float_bits(v) == 0u) continue;
    if (!(fabs(static_cast<double>(v)) > thr) || (!allow && nonfinite(v)))
      note(slots, kSlotBody, i);
    ++selected;
  }
  // An integer count: atomics keep it exact and deterministic.
  if (selected) atomicAdd(slots + kSlotCount, selected);
}

__global__ void randk_draws_k(RngStream rng, std::uint64_t n, std::uint64_t k, std::uint64_t* t) {
  for (std::uint64_t i = tid(); i < k; i += nthreads()) {
    const std::uint64_t j = n - k + i;
    t[i] = rng.uniform_below(j + 1, j);
  }
}

// ---- DGC: strided samples, ordered compaction (no CUB) -------------------------------------

__global__ void strided_abs_k(const float* __restrict__ in, std::uint64_t off, std::uint64_t stride,
                              std::uint64_t m, float* out) {
  for (std::uint64_t i = tid(); i < m; i += nthreads()) out[i] = fabsf(in[off + i * stride]);
}

// The predicate of an ordered compaction over positions [0, m) and the value it emits.
struct CompactPred {
  Compact mode;
  const float* in;
  float thr;
  const std::uint32_t* idx;
  __device__ bool operator()(std::uint64_t e) const {
    if (mode == Compact::kNonZero) return in[idx[e]] != 0.0f;  // -0 is zero too
    // DGC's "importance >= threshold" with NaN above every number (reference at_least).
    const float imp = fabsf(in[e]);
    if (imp != imp) return true;
    if (thr != thr) return false;
    return imp >= thr;
  }
  __device__ std::uint32_t value(std::uint64_t e) const {
    return mode == Compact::kNonZero ? idx[e] : static_cast<std::uint32_t>(e);
  }
};
constexpr std::uint64_t kPerThread = kTile / kThreads;  // 16 consecutive positions per thread

// One block per tile of 4096 positions: the number of matches (integer atomics: exact).
__global__ void compact_count_k(CompactPred p, std::uint64_t m, std::uint32_t* counts) {
  __shared__ unsigned int total;
  const std::uint64_t ntiles = (m + kTile - 1) / kTile;
  for (std::uint64_t t = blockIdx.x; t < ntiles; t += gridDim.x) {
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    unsigned int c = 0;
    const std::uint64_t b = t * kTile + threadIdx.x * kPerThread;
    for (std::uint64_t e = b; e < b + kPerThread && e < m; ++e) c += p(e) ? 1u : 0u;
    if (c) atomicAdd(&total, c);
    __syncthreads();
    if (threadIdx.x == 0) counts[t] = total;
    __syncthreads();
  }
}

// Writes the matches of every tile in position order from offsets[tile]; positions >= limit
// are dropped (DGC's truncation to the first k).
__global__ void compact_write_k(CompactPred p, std::uint64_t m, const std::uint64_t* offsets,
                                std::uint64_t limit, std::uint32_t* out) {
  __shared__ unsigned int prefix[kThreads];
  const std::uint64_t ntiles = (m + kTile - 1) / kTile;
  for (std::uint64_t t = blockIdx.x; t < ntiles; t += gridDim.x) {
    unsigned int c = 0;
    const std::uint64_t b = t * kTile + threadIdx.x * kPerThread;
    for (std::uint64_t e = b; e < b + kPerThread && e < m; ++e) c += p(e) ? 1u : 0u;
    prefix[threadIdx.x] = c;
    __syncthreads();
    if (threadIdx.x == 0) {  // 256 adds: cheaper to write than a scan, and in order
      unsigned int run = 0;
      for (int i = 0; i < kThreads; ++i) {
        const unsigned int v = prefix[i];
        prefix[i] = run;
        run += v;
      }
    }
    __syncthreads();
    std::uint64_t pos = offsets[t] + prefix[threadIdx.x];
    for (std::uint64_t e = b; e < b + kPerThread && e < m && pos < limit; ++e) {
      if (p(e)) out[pos++] = p.value(e);
    }
    __syncthreads();
  }
}

__global__ void check_nonzero_k(const float* __restrict__ val, std::uint64_t count,
                                unsigned long long* slots) {
  for (std::uint64_t i = tid(); i < count; i += nthreads()) {
    if (val[i] == 0.0f) note(slots, kSlotBody, i);
  }
}

// ---- fused error feedback (fused_ef.hpp semantics) -------------------------------------------

// S2-S4 for one element, the reference's expressions verbatim (no FMA: --fmad=false). Returns
// p; *m_new gets m'. The form is uniform across the grid, so its branch does not diverge.
__device__ __forceinline__ float worker_p(const FusedStep& st, float g, float m, float e,
                                          float* m_new) {
  float u = g;
  float mn = m;
  if (st.form == 1) {  // heavy ball
    mn = static_cast<float>(st.mu * m + g);
    u = mn;
  } else if (st.form == 2) {  // Nesterov
    mn = static_cast<float>(st.mu * m + g);
    u = static_cast<float>(g + st.mu * mn);
  } else if (st.form == 3) {  // EMA
    mn = static_cast<float>(st.mu * m + (1.0 - st.mu) * g);
    u = mn;
  }
  *m_new = mn;
  if (st.inside) u = static_cast<float>(st.eta * u);
  return st.ef ? static_cast<float>(u + st.rescale * e) : u;
}

__global__ void fused_p_k(FusedStep st, const float* __restrict__ g, const float* __restrict__ m,
                          const float* __restrict__ e, std::uint64_t n, float* p,
                          unsigned long long* slots) {
  for (std::uint64_t j = tid(); j < n; j += nthreads()) {
    float mn;
    const float gj = g[j];
    p[j] = worker_p(st, gj, st.form ? m[j] : 0.0f, st.ef ? e[j] : 0.0f, &mn);
    if (nonfinite(gj)) note(slots, kSlotInput, j);
  }
}

// m' (recomputed: cheaper than a store in the first sweep and a load here) and e' = f32(p - D_j)
// with D_j decoded inline from the payload body.
__global__ void fused_update_k(FusedStep st, const float* __restrict__ g, float* m, float* e,
                               const float* __restrict__ p, const void* __restrict__ body,
                               const float* __restrict__ scales, Groups groups) {
  const std::uint64_t n = groups.n;
  for (std::uint64_t j = tid(); j < n; j += nthreads()) {
    if (st.form) {
      float mn;
      (void)worker_p(st, g[j], m[j], 0.0f, &mn);
      m[j] = mn;
    }
    if (!st.ef) continue;
    float q;
    switch (st.decode) {
      case 0: q = static_cast<const float*>(body)[j]; break;
      case 1: q = f16_bits_to_float(static_cast<const std::uint16_t*>(body)[j]); break;
      case 2: q = bf16_bits_to_float(static_cast<const std::uint16_t*>(body)[j]); break;
      case 4: q = 0.0f; break;  // p is e' already
      default: {  // sign bits times the block scale (bit set -> -s, also for 0 and NaN)
        const float sc = scales ? scales[group_of(groups, j)] : 1.0f;
        const std::uint32_t w = static_cast<const std::uint32_t*>(body)[j / 32];
        q = bits_float(float_bits(sc) ^ (((w >> (j % 32)) & 1u) << 31));
      }
    }
    e[j] = static_cast<float>(static_cast<double>(p[j]) - static_cast<double>(q));
  }
}

}  // namespace

// ---- launchers ---------------------------------------------------------------------------------

cudaError_t write_header(const std::uint8_t* h, std::uint8_t* d_payload, cudaStream_t s) {
  Philox4x32 a{}, b{};
  for (int w = 0; w < 8; ++w) {
    std::uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | h[4 * w + k];
    (w < 4 ? a.v[w] : b.v[w - 4]) = v;
  }
  header_k<<<1, 32, 0, s>>>(a, b, d_payload);
  return cudaGetLastError();
}

cudaError_t elem_encode(ElemFmt f, const float* in, std::uint64_t n, void* body, bool check,
                        unsigned long long* slots, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  const bool vec = aligned16(in) && aligned16(body);
  const unsigned gsz = grid_for(n / 4 + 1);
  switch (f) {
    case ElemFmt::kF32:
      elem_encode_k<ElemFmt::kF32><<<gsz, kThreads, 0, s>>>(in, n, body, check, slots, vec);
      break;
    case ElemFmt::kF16:
      elem_encode_k<ElemFmt::kF16><<<gsz, kThreads, 0, s>>>(in, n, body, check, slots, vec);
      break;
    case ElemFmt::kBF16:
      elem_encode_k<ElemFmt::kBF16><<<gsz, kThreads, 0, s>>>(in, n, body, check, slots, vec);
      break;
  }
  return cudaGetLastError();
}

cudaError_t elem_check(ElemFmt f, const void* body, std::uint64_t n, unsigned long long* slots,
                       cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  const unsigned gsz = grid_for(n);
  switch (f) {
    case ElemFmt::kF32: elem_check_k<ElemFmt::kF32><<<gsz, kThreads, 0, s>>>(body, n, slots); break;
    case ElemFmt::kF16: elem_check_k<ElemFmt::kF16><<<gsz, kThreads, 0, s>>>(body, n, slots); break;
    case ElemFmt::kBF16:
      elem_check_k<ElemFmt::kBF16><<<gsz, kThreads, 0, s>>>(body, n, slots);
      break;
  }
  return cudaGetLastError();
}

cudaError_t elem_decode(ElemFmt f, const void* body, std::uint64_t n, float* out, bool acc,
                        float alpha, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  const bool vec = aligned16(out) && aligned16(body);
  const unsigned gsz = grid_for(n / 4 + 1);
  const double a = static_cast<double>(alpha);
  switch (f) {
    case ElemFmt::kF32:
      elem_decode_k<ElemFmt::kF32><<<gsz, kThreads, 0, s>>>(body, n, out, acc, a, vec);
      break;
    case ElemFmt::kF16:
      elem_decode_k<ElemFmt::kF16><<<gsz, kThreads, 0, s>>>(body, n, out, acc, a, vec);
      break;
    case ElemFmt::kBF16:
      elem_decode_k<ElemFmt::kBF16><<<gsz, kThreads, 0, s>>>(body, n, out, acc, a, vec);
      break;
  }
  return cudaGetLastError();
}

cudaError_t find_nonfinite(const float* in, std::uint64_t n, unsigned long long* slots,
                           cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  find_nonfinite_k<<<grid_for(n), kThreads, 0, s>>>(in, n, slots);
  return cudaGetLastError();
}

cudaError_t sign_pack(const float* in, std::uint64_t n, std::uint32_t* words, bool check,
                      unsigned long long* slots, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  const std::uint64_t warps = (n + 127) / 128;
  sign_pack_k<<<grid_for(warps * 32), kThreads, 0, s>>>(in, n, words, check, slots, aligned16(in));
  return cudaGetLastError();
}

cudaError_t sign_decode(const std::uint32_t* words, const float* scales, const Groups& g,
                        float* out, bool acc, float alpha, cudaStream_t s) {
  if (g.n == 0) return cudaSuccess;
  sign_decode_k<<<grid_for(g.n), kThreads, 0, s>>>(words, scales, g, out, acc,
                                                   static_cast<double>(alpha));
  return cudaGetLastError();
}

std::uint64_t reduce_tmp_doubles(const Groups& g) {
  const std::uint64_t tpg = (g.max_size + kTile - 1) / kTile;
  return g.count * (tpg ? tpg : 1);
}

template <Reduce R>
void launch_reduce(const float* in, const Groups& g, std::uint64_t tpg, double* tmp, double* acc,
                   const double* center, cudaStream_t s) {
  tile_reduce_k<R><<<grid_for(g.count * tpg, 1), kThreads, 0, s>>>(in, g, tpg, tmp, center);
  group_sum_k<R><<<grid_for(g.count), kThreads, 0, s>>>(tmp, g, tpg, acc);
}

cudaError_t group_reduce(Reduce r, const float* in, const Groups& g, double* tmp, double* acc,
                         cudaStream_t s, const double* center) {
  if (g.count == 0) return cudaSuccess;
  std::uint64_t tpg = (g.max_size + kTile - 1) / kTile;
  if (tpg == 0) tpg = 1;
  switch (r) {
    case Reduce::kSumAbs: launch_reduce<Reduce::kSumAbs>(in, g, tpg, tmp, acc, center, s); break;
    case Reduce::kSumSq: launch_reduce<Reduce::kSumSq>(in, g, tpg, tmp, acc, center, s); break;
    case Reduce::kMaxAbs: launch_reduce<Reduce::kMaxAbs>(in, g, tpg, tmp, acc, center, s); break;
    case Reduce::kSum: launch_reduce<Reduce::kSum>(in, g, tpg, tmp, acc, center, s); break;
    case Reduce::kSumSqDev:
      launch_reduce<Reduce::kSumSqDev>(in, g, tpg, tmp, acc, center, s);
      break;
  }
  return cudaGetLastError();
}

cudaError_t group_finish(Finish f, const double* acc, const Groups& g, float* scales,
                         cudaStream_t s) {
  if (g.count == 0) return cudaSuccess;
  group_finish_k<<<grid_for(g.count), kThreads, 0, s>>>(f, acc, g, scales);
  return cudaGetLastError();
}

cudaError_t check_scales(const float* scales, std::uint64_t count, bool allow_nonfinite,
                         unsigned long long* slots, cudaStream_t s) {
  if (count == 0) return cudaSuccess;
  check_scales_k<<<grid_for(count), kThreads, 0, s>>>(scales, count, allow_nonfinite, slots);
  return cudaGetLastError();
}

cudaError_t check_padding(const std::uint32_t* words, std::uint64_t used_bits, std::uint64_t nwords,
                          unsigned long long* slots, cudaStream_t s) {
  if (used_bits >= 32 * nwords) return cudaSuccess;
  check_padding_k<<<1, 32, 0, s>>>(words, used_bits, nwords, slots);
  return cudaGetLastError();
}

cudaError_t qsgd_encode(const float* in, const Groups& g, const float* norms, const QsgdParams& p,
                        std::uint32_t* words, cudaStream_t s) {
  if (g.n == 0) return cudaSuccess;
  const std::uint64_t nwords = (g.n * p.bits + 31) / 32;
  qsgd_encode_k<<<grid_for(nwords), kThreads, 0, s>>>(in, g, norms, p, words);
  return cudaGetLastError();
}

cudaError_t qsgd_check(const std::uint32_t* words, const Groups& g, const float* norms,
                       const QsgdParams& p, unsigned long long* slots, cudaStream_t s) {
  if (g.n == 0) return cudaSuccess;
  qsgd_check_k<<<grid_for(g.n), kThreads, 0, s>>>(words, g, norms, p, slots);
  return cudaGetLastError();
}

cudaError_t qsgd_decode(const std::uint32_t* words, const Groups& g, const float* norms,
                        const QsgdParams& p, float* out, bool acc, float alpha, cudaStream_t s) {
  if (g.n == 0) return cudaSuccess;
  qsgd_decode_k<<<grid_for(g.n), kThreads, 0, s>>>(words, g, norms, p, out, acc,
                                                   static_cast<double>(alpha));
  return cudaGetLastError();
}

cudaError_t terngrad_encode(const float* in, const Groups& g, const float* bounds,
                            const float* scalers, const QsgdParams& p, std::uint32_t* words,
                            cudaStream_t s) {
  if (g.n == 0) return cudaSuccess;
  terngrad_encode_k<<<grid_for((g.n + 15) / 16), kThreads, 0, s>>>(in, g, bounds, scalers, p,
                                                                   words);
  return cudaGetLastError();
}

cudaError_t terngrad_check(const std::uint32_t* words, const Groups& g, const float* scalers,
                           unsigned long long* slots, cudaStream_t s) {
  if (g.n == 0) return cudaSuccess;
  terngrad_check_k<<<grid_for(g.n), kThreads, 0, s>>>(words, g, scalers, slots);
  return cudaGetLastError();
}

cudaError_t terngrad_decode(const std::uint32_t* words, const Groups& g, const float* scalers,
                            float* out, bool acc, float alpha, cudaStream_t s) {
  if (g.n == 0) return cudaSuccess;
  terngrad_decode_k<<<grid_for(g.n), kThreads, 0, s>>>(words, g, scalers, out, acc,
                                                       static_cast<double>(alpha));
  return cudaGetLastError();
}

cudaError_t sparse_decode(const std::uint32_t* idx, const float* val, std::uint64_t count,
                          std::uint64_t n, float* out, bool acc, float alpha, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  const double a = static_cast<double>(alpha);
  prefill_k<<<grid_for(n), kThreads, 0, s>>>(out, n, acc, a);
  if (count > 0) scatter_k<<<grid_for(count), kThreads, 0, s>>>(idx, val, count, out, acc, a);
  return cudaGetLastError();
}

cudaError_t check_indices(const std::uint32_t* idx, std::uint64_t count, std::uint64_t n,
                          unsigned long long* slots, cudaStream_t s) {
  if (count == 0) return cudaSuccess;
  check_indices_k<<<grid_for(count), kThreads, 0, s>>>(idx, count, n, slots);
  return cudaGetLastError();
}

cudaError_t check_values(const float* val, std::uint64_t count, bool allow_nonfinite, double thr,
                         unsigned long long* slots, cudaStream_t s) {
  if (count == 0) return cudaSuccess;
  check_values_k<<<grid_for(count), kThreads, 0, s>>>(val, count, allow_nonfinite, thr, slots);
  return cudaGetLastError();
}

cudaError_t gather(const float* in, const std::uint32_t* idx, std::uint64_t count, double scale,
                   bool check, float* vals, unsigned long long* slots, cudaStream_t s) {
  if (count == 0) return cudaSuccess;
  gather_k<<<grid_for(count), kThreads, 0, s>>>(in, idx, count, scale, check, vals, slots);
  return cudaGetLastError();
}

cudaError_t threshold_dense(const float* in, std::uint64_t n, double thr, float* out,
                            cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  threshold_dense_k<<<grid_for(n), kThreads, 0, s>>>(in, n, thr, out);
  return cudaGetLastError();
}

cudaError_t threshold_dense_check(const float* body, std::uint64_t n, double thr,
                                  bool allow_nonfinite, unsigned long long* slots, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  threshold_dense_check_k<<<grid_for(n), kThreads, 0, s>>>(body, n, thr, allow_nonfinite, slots);
  return cudaGetLastError();
}

cudaError_t randk_draws(std::uint64_t seed, std::uint32_t step, std::uint32_t tensor_id,
                        std::uint32_t who, std::uint64_t n, std::uint64_t k, std::uint64_t* t,
                        cudaStream_t s) {
  if (k == 0) return cudaSuccess;
  const RngStream rng(seed, RngPurpose::kRandKIndices, step, tensor_id, who);
  randk_draws_k<<<grid_for(k), kThreads, 0, s>>>(rng, n, k, t);
  return cudaGetLastError();
}

cudaError_t strided_abs(const float* in, std::uint64_t off, std::uint64_t stride, std::uint64_t m,
                        float* out, cudaStream_t s) {
  if (m == 0) return cudaSuccess;
  strided_abs_k<<<grid_for(m), kThreads, 0, s>>>(in, off, stride, m, out);
  return cudaGetLastError();
}

std::uint64_t compact_tiles(std::uint64_t m) { return (m + kTile - 1) / kTile; }

cudaError_t compact_count(const CompactArgs& a, std::uint32_t* tile_counts, cudaStream_t s) {
  if (a.m == 0) return cudaSuccess;
  const CompactPred p{a.mode, a.in, a.thr, a.idx};
  compact_count_k<<<grid_for(compact_tiles(a.m), 1), kThreads, 0, s>>>(p, a.m, tile_counts);
  return cudaGetLastError();
}

cudaError_t compact_write(const CompactArgs& a, const std::uint64_t* tile_offsets,
                          std::uint64_t limit, std::uint32_t* out, cudaStream_t s) {
  if (a.m == 0 || limit == 0) return cudaSuccess;
  const CompactPred p{a.mode, a.in, a.thr, a.idx};
  compact_write_k<<<grid_for(compact_tiles(a.m), 1), kThreads, 0, s>>>(p, a.m, tile_offsets, limit,
                                                                       out);
  return cudaGetLastError();
}

cudaError_t check_nonzero(const float* val, std::uint64_t count, unsigned long long* slots,
                          cudaStream_t s) {
  if (count == 0) return cudaSuccess;
  check_nonzero_k<<<grid_for(count), kThreads, 0, s>>>(val, count, slots);
  return cudaGetLastError();
}

cudaError_t fused_p(const FusedStep& st, const float* g, const float* m, const float* e,
                    std::uint64_t n, float* p, unsigned long long* slots, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  fused_p_k<<<grid_for(n), kThreads, 0, s>>>(st, g, m, e, n, p, slots);
  return cudaGetLastError();
}

cudaError_t fused_update(const FusedStep& st, const float* g, float* m, float* e, const float* p,
                         const void* body, const float* scales, const Groups& groups,
                         cudaStream_t s) {
  if (groups.n == 0 || (!st.form && !st.ef)) return cudaSuccess;
  fused_update_k<<<grid_for(groups.n), kThreads, 0, s>>>(st, g, m, e, p, body, scales, groups);
  return cudaGetLastError();
}

}  // namespace gradcomp::cuda::detail
