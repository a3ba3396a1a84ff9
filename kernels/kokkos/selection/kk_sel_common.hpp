// Shared pieces of the selection and quantization kernels (topk dgc threshold signtopk qsgd
// qsgd_topk qsgd_randk): unmanaged views over host spans, the |x| sort key, the radix select,
// payload framing and the validate-then-apply decode path. See docs/kernels-selection.md.
//
// Kernels are templated on the execution space and use only Kokkos API common to 3.4 and 4.x.
// The host entry points run them on Kokkos' default execution space; they wrap host spans
// directly, which is valid because that space is host-accessible in this build (a CUDA build
// would mirror the spans first: see the static_assert below).
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../kk_ops.hpp"
#include "gradcomp/dtype.hpp"
#include "gradcomp/rng.hpp"
#include "gradcomp/wire_format.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the selection kernels store u32/f32 wire fields with native stores (little-endian only)"
#endif

namespace gradcomp::kk::sel {

using Exec = Kokkos::DefaultExecutionSpace;
static_assert(Kokkos::SpaceAccessibility<Kokkos::HostSpace, Exec::memory_space>::accessible,
              "host spans are wrapped directly: mirror them for a device execution space");

template <class T, class Space = Exec>
using UView =
    Kokkos::View<T*, typename Space::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

template <class Space = Exec>
using Range = Kokkos::RangePolicy<Space, Kokkos::IndexType<std::uint64_t>>;

// Reductions and scans work on chunks of kChunk elements with register accumulators: a
// per-element update of the reduction value goes through memory on Serial (about 1 ns per
// element), a chunk-local one does not. n / kChunk work items still feed a parallel backend.
constexpr std::uint64_t kChunk = 4096;
inline std::uint64_t chunks(std::uint64_t n) { return (n + kChunk - 1) / kChunk; }
KOKKOS_INLINE_FUNCTION std::uint64_t chunk_end(std::uint64_t c, std::uint64_t n) {
  return (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
}

constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kNanKey = 0x7FFFFFFFu;
constexpr std::uint32_t kInfKey = 0x7F800000u;

// Sort key of |x|: for non-negative floats the bit pattern orders like the value. Every NaN maps
// to one key above +Inf, so NaNs (nonfinite=propagate only) rank first and tie by index, as in
// the reference's topk_indices.
KOKKOS_INLINE_FUNCTION std::uint32_t abs_key(float x) {
  const std::uint32_t b = float_bits(x) & 0x7FFFFFFFu;
  return b > kInfKey ? kNanKey : b;
}
KOKKOS_INLINE_FUNCTION bool key_nonfinite(std::uint32_t key) { return key >= kInfKey; }

inline UView<const float> view_of(Span<const float> s) {
  return UView<const float>(s.data(), s.size());
}
inline UView<float> view_of(Span<float> s) { return UView<float>(s.data(), s.size()); }

// ---- argument checks shared by every entry point (same codes as ref::compress/decompress) ----
Status check_compress_args(const CompressorDesc& desc, Span<const float> in);
Status check_decompress_args(const CompressorDesc& desc, const CompressContext& ctx,
                             Span<const std::uint8_t> payload, Span<float> out, WireHeader& header);
Status nonfinite_status(const CompressorDesc& desc, Span<const float> in, std::uint64_t i);

// First index whose element is NaN/Inf, or kNone (used where no other pass reads the input).
std::uint64_t first_nonfinite(UView<const float> in);

// A payload of kHeaderBytes + body_bytes bytes with the header written; the body is zeroed
// only when `zero_body` (packed bit fields are written whole-word, so they need no zeroing).
Status new_payload(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t count,
                   std::uint8_t flags, std::uint64_t body_bytes, std::vector<std::uint8_t>& out);

// Dense fallback (flag kFlagDense): the n input values, copied with the finiteness check fused.
Status write_dense(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                   std::vector<std::uint8_t>& payload);

// ---- filtered compaction ----------------------------------------------------------------------
// Every element whose key lies in [lo, hi] (lo > hi: none), in index order: the first
// idx.extent(0) of them go to idx/val; returns how many there are in total and (check) the
// first non-finite index (else kNone). Counting runs branch-free over 64-element blocks, so
// the pass streams at close to memory speed when few elements are taken.
struct Taken {
  std::uint64_t count = 0;
  std::uint64_t first_bad = kNone;
};
Taken take_keys(UView<const float> in, std::uint32_t lo, std::uint32_t hi, bool check,
                UView<std::uint32_t> idx, UView<float> val);

// ---- exact top-k by radix select ----------------------------------------------------------
// The k-th largest key (rule: larger |x| first, then lower index) found by two histogram passes
// over the key bits; the finiteness check is fused into the first pass.
struct KthKey {
  std::uint32_t key = 0;          // threshold key T
  std::uint64_t greater = 0;      // elements with key > T
  std::uint64_t ties_needed = 0;  // lowest-index elements with key == T to take
  std::uint64_t first_bad = kNone;
};
// k in [1, n]. check_finite: record the first non-finite index (then stop early).
KthKey kth_key(UView<const float> in, std::uint64_t k, bool check_finite);
// Emits the top-k (given the KthKey) in increasing index order into idx/val (k long). `src`:
// the global index of each element of `in` (empty: its position).
void emit_topk(UView<const float> in, const KthKey& t, UView<std::uint32_t> idx, UView<float> val,
               UView<const std::uint32_t> src = UView<const std::uint32_t>());
// The exact top-k (k in [1, n]) into idx/val. Large inputs: a threshold key estimated from a
// strided sample, then one take_keys pass (finiteness fused) keeps every element at or above it;
// when that holds at least k and at most the scratch capacity, the radix select runs on that
// short list only. Otherwise two reads of the input: the pass-1 histogram (finiteness fused),
// then a compaction of every element at or above the chosen pass-1 bin. Returns the first
// non-finite index (check only) or kNone.
std::uint64_t select_topk(UView<const float> in, std::uint64_t k, bool check,
                          UView<std::uint32_t> idx, UView<float> val);

// ---- decode side ---------------------------------------------------------------------------
// Sparse (index, value) lists as decoded from a payload, applied to out:
//   decompress:  out = 0, out[idx[i]] = val[i]
//   accumulate:  out[j] = f32(f64(out[j]) + f64(alpha) * D_j) for every j, like the registry's
//                reference path (unselected j use D_j = +0, which still turns -0 into +0).
void apply_sparse(UView<const std::uint32_t> idx, UView<const float> val, bool accumulate,
                  float alpha, UView<float> out);
void apply_dense(UView<const float> val, bool accumulate, float alpha, UView<float> out);

// Checks `count` u32 indices (strictly increasing, < n). Returns the first bad i or kNone.
std::uint64_t first_bad_index(UView<const std::uint32_t> idx, std::uint64_t n);
Status describe_bad_index(const std::uint32_t* idx, std::uint64_t i, std::uint64_t n);

// A view over a little-endian u32/f32 array inside a payload (4-byte aligned in practice).
inline UView<const std::uint32_t> u32_view(const std::uint8_t* p, std::uint64_t count) {
  return UView<const std::uint32_t>(reinterpret_cast<const std::uint32_t*>(p), count);
}
inline UView<const float> f32_view(const std::uint8_t* p, std::uint64_t count) {
  return UView<const float>(reinterpret_cast<const float*>(p), count);
}

// Dense-fallback payload: count == n, body 4n bytes, and (nonfinite=error) finite values.
Status check_dense(const CompressorDesc& desc, const WireHeader& header,
                   Span<const std::uint8_t> body);

// The dense flag must be set exactly when `dense` (k >= n); the message names k and n.
Status check_dense_flag(const WireHeader& header, bool dense, std::uint64_t k, std::uint64_t n);

// Head of the k-sparse decoders (topk dgc signtopk qsgd_topk qsgd_randk randk): checks the
// dense flag against `dense`; a dense payload is then checked and applied here and `done` is
// set, otherwise the caller decodes the sparse body. Errors carry no compressor name.
Status decode_if_dense(const CompressorDesc& desc, const WireHeader& header,
                       Span<const std::uint8_t> body, std::uint64_t k, bool dense, bool accumulate,
                       float alpha, Span<float> out, bool& done);

// ---- registration ----------------------------------------------------------------------------
// Each decoder is one function templated on accumulate; decompress is its non-accumulating
// instance with alpha = 1.
using DecodeFn = Status (*)(const CompressorDesc&, const CompressContext&, Span<const std::uint8_t>,
                            float, Span<float>);
template <DecodeFn Decode>
Status decompress_of(const CompressorDesc& desc, const CompressContext& ctx,
                     Span<const std::uint8_t> payload, Span<float> out) {
  return Decode(desc, ctx, payload, 1.0f, out);
}

// Histogram counts, scan halves and u32 indices (and the header's count) are 32-bit.
inline bool small_enough(const CompressorDesc& desc) { return desc.n < (std::uint64_t{1} << 32); }

// The ops of a kernel limited to small_enough descriptors.
template <DecodeFn Decompress, DecodeFn Accumulate, class F>
KkOps small_ops(std::uint64_t (*payload_bytes)(const CompressorDesc&), F compress) {
  KkOps o;
  o.can_implement = small_enough;
  o.ops.payload_bytes = payload_bytes;
  o.ops.compress = compress;
  o.ops.decompress = decompress_of<Decompress>;
  o.ops.decompress_accumulate = Accumulate;
  return o;
}

// Registration of the QSGD family (kk_sel_qsgd.cpp).
void register_qsgd_family(KkTable& table);

}  // namespace gradcomp::kk::sel
