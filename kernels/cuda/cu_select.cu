// Exact selection with CUB (the CUDA toolkit's CCCL): top-k by a stable descending radix sort of
// |x| and threshold selection by cub::DeviceSelect::If. This is the only CUB translation unit:
// parsing CUB dominates the compile time (docs/cuda.md).
#include <thrust/iterator/counting_iterator.h>

#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include "cu_launch.hpp"
#include "gradcomp/dtype.hpp"

namespace gradcomp::cuda::detail {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(std::uint64_t items) {
  std::uint64_t b = (items + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  if (b > 65535) b = 65535;
  return static_cast<unsigned>(b);
}

// Sort keys: the bit pattern of |x| orders non-negative floats like their values; every NaN
// (nonfinite=propagate only) becomes the largest key, as in the reference's tie rule.
__global__ void topk_keys_k(const float* __restrict__ in, std::uint64_t n, std::uint32_t* keys,
                            std::uint32_t* vals) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const std::uint32_t a = float_bits(in[i]) & 0x7fffffffu;
    keys[i] = a > 0x7f800000u ? 0xffffffffu : a;
    vals[i] = static_cast<std::uint32_t>(i);
  }
}

struct AbsAbove {
  const float* in;
  double thr;
  __device__ bool operator()(std::uint32_t i) const {
    return fabs(static_cast<double>(in[i])) > thr;
  }
};

std::size_t round_up(std::size_t x) { return (x + 255) / 256 * 256; }

}  // namespace

cudaError_t topk_indices(const float* in, std::uint64_t n, std::uint64_t k, std::uint32_t* idx_out,
                         cudaStream_t s) {
  if (k == 0 || n == 0) return cudaSuccess;
  const std::int64_t nn = static_cast<std::int64_t>(n);
  const std::int64_t kk = static_cast<std::int64_t>(k);
  // Stable descending sort of (key, index): equal keys keep increasing index order, which is
  // exactly "larger |x| first, then the lower index".
  std::size_t sort_bytes = 0, keys_bytes = 0;
  cudaError_t e = cub::DeviceRadixSort::SortPairsDescending(
      nullptr, sort_bytes, static_cast<const std::uint32_t*>(nullptr),
      static_cast<std::uint32_t*>(nullptr), static_cast<const std::uint32_t*>(nullptr),
      static_cast<std::uint32_t*>(nullptr), nn, 0, 32, s);
  if (e != cudaSuccess) return e;
  e = cub::DeviceRadixSort::SortKeys(nullptr, keys_bytes,
                                     static_cast<const std::uint32_t*>(nullptr),
                                     static_cast<std::uint32_t*>(nullptr), kk, 0, 32, s);
  if (e != cudaSuccess) return e;
  const std::size_t arr = round_up(4 * n);
  const std::size_t tmp_bytes = round_up(sort_bytes > keys_bytes ? sort_bytes : keys_bytes);
  void* base = nullptr;
  e = cudaMallocAsync(&base, 4 * arr + tmp_bytes, s);
  if (e != cudaSuccess) return e;
  auto* p = static_cast<unsigned char*>(base);
  auto* keys_in = reinterpret_cast<std::uint32_t*>(p);
  auto* vals_in = reinterpret_cast<std::uint32_t*>(p + arr);
  auto* keys_out = reinterpret_cast<std::uint32_t*>(p + 2 * arr);
  auto* vals_out = reinterpret_cast<std::uint32_t*>(p + 3 * arr);
  void* tmp = p + 4 * arr;
  topk_keys_k<<<grid_for(n), kThreads, 0, s>>>(in, n, keys_in, vals_in);
  e = cudaGetLastError();
  if (e == cudaSuccess) {
    e = cub::DeviceRadixSort::SortPairsDescending(tmp, sort_bytes, keys_in, keys_out, vals_in,
                                                  vals_out, nn, 0, 32, s);
  }
  // The k winners, by increasing index (the wire order).
  if (e == cudaSuccess) {
    e = cub::DeviceRadixSort::SortKeys(tmp, keys_bytes, vals_out, idx_out, kk, 0, 32, s);
  }
  const cudaError_t f = cudaFreeAsync(base, s);
  return e != cudaSuccess ? e : f;
}

cudaError_t threshold_select(const float* in, std::uint64_t n, double thr, std::uint32_t* idx_out,
                             std::uint64_t* d_count, cudaStream_t s) {
  if (n == 0) return cudaMemsetAsync(d_count, 0, sizeof(std::uint64_t), s);
  const thrust::counting_iterator<std::uint32_t> first(0);
  const std::int64_t nn = static_cast<std::int64_t>(n);
  std::size_t bytes = 0;
  cudaError_t e =
      cub::DeviceSelect::If(nullptr, bytes, first, idx_out, d_count, nn, AbsAbove{in, thr}, s);
  if (e != cudaSuccess) return e;
  void* tmp = nullptr;
  e = cudaMallocAsync(&tmp, bytes ? bytes : 1, s);
  if (e != cudaSuccess) return e;
  // DeviceSelect keeps the input order: the indices come out strictly increasing.
  e = cub::DeviceSelect::If(tmp, bytes, first, idx_out, d_count, nn, AbsAbove{in, thr}, s);
  const cudaError_t f = cudaFreeAsync(tmp, s);
  return e != cudaSuccess ? e : f;
}

}  // namespace gradcomp::cuda::detail
