// Streaming kernels: identity, fp16, bf16, sign, blocksign (docs/kernels.md). One pass over the
// input per payload field; the finiteness check (nonfinite=error) rides in the first pass as a
// min-reduction of the first bad index. Sign bits are packed a 32-element word at a time in
// registers. Reductions run over chunks of elements so that the per-element work stays in
// registers on Serial (a per-element reducer update goes through memory).
#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../kk_ops.hpp"
#include "gradcomp/dtype.hpp"
#include "gradcomp/wire_format.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the streaming kernels store u16/u32/f32 wire fields with native stores"
#endif

namespace gradcomp::kk {
namespace {

using Exec = Kokkos::DefaultExecutionSpace;
static_assert(Kokkos::SpaceAccessibility<Kokkos::HostSpace, Exec::memory_space>::accessible,
              "host spans are wrapped directly: mirror them for a device execution space");

template <class T, class Space = Exec>
using UView =
    Kokkos::View<T*, typename Space::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class Space = Exec>
using Range = Kokkos::RangePolicy<Space, Kokkos::IndexType<std::uint64_t>>;

constexpr std::uint64_t kNone = ~std::uint64_t{0};
// Chunk of 4096 elements = 128 sign words: enough work per reduction item to amortise the
// reducer update, and n / 4096 items still feed a parallel backend.
constexpr std::uint64_t kChunk = 4096;
inline std::uint64_t chunks(std::uint64_t n) { return (n + kChunk - 1) / kChunk; }
KOKKOS_INLINE_FUNCTION std::uint64_t chunk_end(std::uint64_t c, std::uint64_t n) {
  return (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
}
KOKKOS_INLINE_FUNCTION bool nonfinite_bits(float x) {
  return (float_bits(x) & 0x7F800000u) == 0x7F800000u;
}
KOKKOS_INLINE_FUNCTION std::uint64_t double_bits(double x) {
  std::uint64_t u;
  ::memcpy(&u, &x, sizeof u);
  return u;
}
KOKKOS_INLINE_FUNCTION double bits_double(std::uint64_t u) {
  double x;
  ::memcpy(&x, &u, sizeof x);
  return x;
}
KOKKOS_INLINE_FUNCTION std::uint64_t min_u64(std::uint64_t a, std::uint64_t b) {
  return a < b ? a : b;
}

// ---- shared host-side pieces ----------------------------------------------------------------

Status check_compress_args(const CompressorDesc& desc, Span<const float> in) {
  GRADCOMP_TRY(validate(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(in.size() == desc.n, name, ": input has ", in.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(in.size() == 0 || in.data() != nullptr, name, ": null input pointer");
  return Status::success();
}

Status nonfinite_status(const CompressorDesc& desc, Span<const float> in, std::uint64_t i) {
  return make_status(StatusCode::kNonFinite, compressor_name(desc.kind), ": input[", i,
                     "] = ", in[i],
                     " is not finite (nonfinite=error; use nonfinite=propagate to allow)");
}

// Header written; every body byte is then written by a kernel. `out` is the per-thread scratch
// buffer (see scratch()), so resize() usually neither allocates nor zero-fills.
Status new_payload(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t count,
                   std::uint64_t body_bytes, std::vector<std::uint8_t>& out) {
  GRADCOMP_CHECK_ARG(body_bytes <= 0xFFFFFFFFull, compressor_name(desc.kind), ": body of ",
                     body_bytes, " bytes exceeds the 32-bit body_bytes header field");
  GRADCOMP_CHECK_ARG(count <= 0xFFFFFFFFull, compressor_name(desc.kind), ": count ", count,
                     " exceeds the 32-bit header field");
  out.resize(kHeaderBytes + body_bytes);
  WireHeader h;
  h.compressor = static_cast<std::uint8_t>(desc.kind);
  h.flags = 0;
  h.n = desc.n;
  h.step = ctx.step;
  h.tensor_id = ctx.tensor_id;
  h.count = static_cast<std::uint32_t>(count);
  h.body_bytes = static_cast<std::uint32_t>(body_bytes);
  write_header(h, out.data());
  return Status::success();
}

// Compress writes into this buffer and swaps it with the caller's payload only on success
// (payload untouched on error). The caller's previous buffer becomes the next scratch, so a
// caller that reuses its payload vector ping-pongs two warm buffers: no page faults and no
// zero-fill per call (a fresh 64 MiB vector costs more than the kernel itself).
std::vector<std::uint8_t>& scratch() {
  thread_local std::vector<std::uint8_t> buf;
  return buf;
}

struct Decoded {
  WireHeader header;
  Span<const std::uint8_t> body;
};

Status check_decompress_args(const CompressorDesc& desc, const CompressContext& ctx,
                             Span<const std::uint8_t> payload, std::size_t out_size, Decoded& d) {
  GRADCOMP_TRY(validate(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(out_size == desc.n, name, ": output has ", out_size,
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(payload.size() == 0 || payload.data() != nullptr, name,
                     ": null payload pointer");
  Status s = read_header(payload, desc.kind, desc.n, ctx.step, ctx.tensor_id, &d.header);
  if (!s.ok()) return make_status(s.code(), name, ": ", s.message());
  d.body = Span<const std::uint8_t>(payload.data() + kHeaderBytes, d.header.body_bytes);
  return Status::success();
}

template <class... Args>
Status corrupt(const CompressorDesc& desc, const Args&... args) {
  return make_status(StatusCode::kCorruptPayload, compressor_name(desc.kind), ": ", args...);
}

// out = D (decompress) or out = f32(f64(out) + f64(alpha) * f64(D)) (accumulate), exactly the
// registry's reference accumulate.
KOKKOS_INLINE_FUNCTION void put(float* out, std::uint64_t i, float v, bool acc, double alpha) {
  out[i] =
      acc ? static_cast<float>(static_cast<double>(out[i]) + alpha * static_cast<double>(v)) : v;
}

// ---- elementwise formats -------------------------------------------------------------------

enum class Fmt { kF32, kF16, kBF16 };

template <Fmt F>
KOKKOS_INLINE_FUNCTION float decode_elem(const void* body, std::uint64_t i) {
  if constexpr (F == Fmt::kF32) {
    return static_cast<const float*>(body)[i];
  } else if constexpr (F == Fmt::kF16) {
    return f16_bits_to_float(static_cast<const std::uint16_t*>(body)[i]);
  } else {
    return bf16_bits_to_float(static_cast<const std::uint16_t*>(body)[i]);
  }
}

// Branch-free forms of dtype.hpp's f16/bf16 conversions, bit for bit the same results: every
// case is computed and the right one selected, so the element loops vectorise (the branchy
// originals kept fp16 scalar at ~0.15 of copy bandwidth).
KOKKOS_INLINE_FUNCTION std::uint32_t f16_bits_of(std::uint32_t x) {
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  const auto sax = static_cast<std::int32_t>(ax);  // signed compares: SSE2 has no unsigned ones
  // Normal half: re-bias the exponent and round to nearest even (as float_to_f16_bits).
  const std::uint32_t normal = (ax - 0x38000000u + 0x0fffu + ((ax >> 13) & 1u)) >> 13;
  // Subnormal half (|f| < 2^-14): adding 0.5f rounds f to a multiple of 2^-24 (to even) in
  // the FPU, leaving m in the low mantissa bits; also gives 0 for |f| <= 2^-25.
  const std::uint32_t sub = float_bits(bits_float(ax) + 0.5f) - 0x3f000000u;
  // Mask selects, not ?:, throughout: with ?: GCC sinks the float add into a branch and then,
  // under -ftrapping-math, will not if-convert (or vectorise) the loop.
  const std::uint32_t is_sub = 0u - static_cast<std::uint32_t>(sax < 0x38800000);
  const std::uint32_t is_inf = 0u - static_cast<std::uint32_t>(sax >= 0x477ff000);  // >= 65520
  const std::uint32_t is_nan = 0u - static_cast<std::uint32_t>(sax > 0x7f800000);
  std::uint32_t r = (sub & is_sub) | (normal & ~is_sub);
  r = (r & ~is_inf) | (0x7c00u & is_inf);
  r = (r & ~is_nan) | (0x7e00u & is_nan);
  return sign | r;
}

KOKKOS_INLINE_FUNCTION float f16_value(std::uint32_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t em = (h & 0x7fffu) << 13;  // exponent and mantissa at their f32 place
  const std::uint32_t e = h & 0x7c00u;
  // Mask selects as in f16_bits_of. Inf/NaN: exponent all ones; normal: re-bias by 112.
  const std::uint32_t is_max = 0u - static_cast<std::uint32_t>(e == 0x7c00u);
  std::uint32_t mag = ((em | 0x7f800000u) & is_max) | ((em + (112u << 23)) & ~is_max);
  // Subnormal half m * 2^-24, exactly: 2^-14 * (1 + m/1024) - 2^-14.
  const float sub = bits_float(em + (113u << 23)) - bits_float(113u << 23);
  const std::uint32_t is_sub = 0u - static_cast<std::uint32_t>(e == 0);
  mag = (float_bits(sub) & is_sub) | (mag & ~is_sub);
  return bits_float(sign | mag);
}

KOKKOS_INLINE_FUNCTION std::uint32_t bf16_bits_of(std::uint32_t x) {
  const auto sax = static_cast<std::int32_t>(x & 0x7fffffffu);
  const std::uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  return sax > 0x7f800000 ? ((x >> 16) | 0x40u) : rounded;
}

// Raw wire element i and whether it decodes to a non-finite value (exponent all ones).
template <Fmt F>
using Elem = std::conditional_t<F == Fmt::kF32, std::uint32_t, std::uint16_t>;
template <Fmt F>
KOKKOS_INLINE_FUNCTION std::uint32_t elem_nonfinite(std::uint32_t w) {
  if constexpr (F == Fmt::kF32) return (w & 0x7F800000u) == 0x7F800000u;
  if constexpr (F == Fmt::kF16) return (w & 0x7C00u) == 0x7C00u;
  return (w & 0x7F80u) == 0x7F80u;
}
template <Fmt F>
KOKKOS_INLINE_FUNCTION float elem_value(std::uint32_t w) {
  if constexpr (F == Fmt::kF32) return bits_float(w);
  if constexpr (F == Fmt::kF16) return f16_value(w);
  return bits_float(w << 16);
}

// First element that is not finite (bad_input) and, for f16/bf16, first finite element that
// overflows the format (bad_overflow): the reference reports the former anywhere before the
// latter, so both are tracked.
struct ElemBad {
  std::uint64_t input = kNone;
  std::uint64_t overflow = kNone;
};

template <Fmt F, class Space>
ElemBad elem_compress(UView<const float, Space> in, void* body_ptr, bool check) {
  const std::uint64_t n = in.extent(0);
  Kokkos::MinMaxScalar<std::uint64_t> mm;  // min = first bad input, max = ~first overflow
  mm.min_val = kNone;
  mm.max_val = 0;
  Kokkos::parallel_reduce(
      "gradcomp::kk::elem_compress", Range<Space>(0, chunks(n)),
      KOKKOS_LAMBDA(const std::uint64_t c, Kokkos::MinMaxScalar<std::uint64_t>& r) {
        const std::uint64_t b = c * kChunk, e = chunk_end(c, n);
        // Integer ORs rather than bools: they keep the loop vectorisable.
        std::uint32_t bad_in = 0, bad_of = 0;
        const float* __restrict x_of = &in(b);
        auto* __restrict dst = static_cast<Elem<F>*>(body_ptr) + b;
        for (std::uint64_t k = 0; k < e - b; ++k) {
          const float x = x_of[k];
          if constexpr (F == Fmt::kF32) {
            dst[k] = float_bits(x);
            bad_in |= static_cast<std::uint32_t>(nonfinite_bits(x));
          } else {
            const std::uint32_t h =
                F == Fmt::kF16 ? f16_bits_of(float_bits(x)) : bf16_bits_of(float_bits(x));
            dst[k] = static_cast<std::uint16_t>(h);
            // Overflowed iff the encoded exponent is all ones while the input was finite.
            const bool h_inf = F == Fmt::kF16 ? (h & 0x7C00u) == 0x7C00u : (h & 0x7F80u) == 0x7F80u;
            const bool x_bad = nonfinite_bits(x);
            bad_in |= static_cast<std::uint32_t>(x_bad);
            bad_of |= static_cast<std::uint32_t>(h_inf && !x_bad);
          }
        }
        if (!check || (bad_in | bad_of) == 0) return;  // rare path below: find the index
        for (std::uint64_t i = b; i < e; ++i) {
          const float x = in(i);
          const bool x_bad = nonfinite_bits(x);
          if (x_bad && i < r.min_val) r.min_val = i;
          if constexpr (F != Fmt::kF32) {
            const std::uint16_t h = F == Fmt::kF16 ? float_to_f16_bits(x) : float_to_bf16_bits(x);
            const bool h_inf = F == Fmt::kF16 ? (h & 0x7C00u) == 0x7C00u : (h & 0x7F80u) == 0x7F80u;
            if (h_inf && !x_bad && ~i > r.max_val) r.max_val = ~i;
          }
        }
      },
      Kokkos::MinMax<std::uint64_t>(mm));
  ElemBad bad;
  bad.input = mm.min_val;
  bad.overflow = mm.max_val == 0 ? kNone : ~mm.max_val;
  return bad;
}

template <Fmt F>
constexpr std::uint64_t elem_bytes() {
  return F == Fmt::kF32 ? 4 : 2;
}

template <Fmt F>
std::uint64_t elem_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + elem_bytes<F>() * desc.n;
}

template <Fmt F>
Status elem_compress_host(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  std::vector<std::uint8_t>& out = scratch();
  GRADCOMP_TRY(new_payload(desc, ctx, desc.n, elem_bytes<F>() * desc.n, out));
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  const ElemBad bad = elem_compress<F, Exec>(UView<const float>(in.data(), in.size()),
                                             out.data() + kHeaderBytes, check);
  if (check && bad.input != kNone) return nonfinite_status(desc, in, bad.input);
  if (check && bad.overflow != kNone) {
    return make_status(StatusCode::kNonFinite, compressor_name(desc.kind), ": input[", bad.overflow,
                       "] = ", in[bad.overflow], " overflows the format to Inf (nonfinite=error)");
  }
  payload.swap(out);
  return Status::success();
}

template <Fmt F>
Status elem_decode_host(const CompressorDesc& desc, const CompressContext& ctx,
                        Span<const std::uint8_t> payload, bool acc, float alpha, Span<float> out) {
  ensure_initialized();
  Decoded d;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out.size(), d));
  if (d.header.count != desc.n) {
    return corrupt(desc, "count ", d.header.count, " != n ", desc.n);
  }
  if (d.body.size() != elem_bytes<F>() * desc.n) {
    return corrupt(desc, "body is ", d.body.size(), " bytes, expected ", elem_bytes<F>() * desc.n);
  }
  const void* body = d.body.data();
  const std::uint64_t n = desc.n;
  if (desc.nonfinite == NonfinitePolicy::kError) {
    // Validation must precede any write (out untouched on error): a read-only pass over the
    // body (2-4 bytes per element), skipped under nonfinite=propagate.
    std::uint64_t first = kNone;
    Kokkos::parallel_reduce(
        "gradcomp::kk::elem_check", Range<>(0, chunks(n)),
        KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& m) {
          const std::uint64_t b = c * kChunk, e = chunk_end(c, n);
          const Elem<F>* __restrict w = static_cast<const Elem<F>*>(body) + b;
          std::uint32_t any = 0;  // integer OR keeps the loop vectorisable (a bool does not)
          for (std::uint64_t k = 0; k < e - b; ++k) any |= elem_nonfinite<F>(w[k]);
          if (any == 0) return;
          for (std::uint64_t k = 0; k < e - b; ++k) {
            if (elem_nonfinite<F>(w[k])) {
              m = min_u64(m, b + k);
              return;
            }
          }
        },
        Kokkos::Min<std::uint64_t>(first));
    if (first != kNone) {
      return corrupt(desc, "decoded element [", first, "] = ", decode_elem<F>(body, first),
                     " is not finite (nonfinite=error)");
    }
  }
  float* o = out.data();
  const double a = static_cast<double>(alpha);
  // Chunks with raw restrict pointers: a per-element lambda over (o, body) left the
  // vectoriser an aliasing question. Two loops so that each vectorises without a per-element
  // test of `acc`.
  Kokkos::parallel_for(
      "gradcomp::kk::elem_decode", Range<>(0, chunks(n)), KOKKOS_LAMBDA(const std::uint64_t c) {
        const std::uint64_t b = c * kChunk, e = chunk_end(c, n);
        const Elem<F>* __restrict w = static_cast<const Elem<F>*>(body) + b;
        float* __restrict ob = o + b;
        if (acc) {
          for (std::uint64_t k = 0; k < e - b; ++k) {
            ob[k] = static_cast<float>(static_cast<double>(ob[k]) +
                                       a * static_cast<double>(elem_value<F>(w[k])));
          }
        } else {
          for (std::uint64_t k = 0; k < e - b; ++k) ob[k] = elem_value<F>(w[k]);
        }
      });
  return Status::success();
}

template <Fmt F>
Status elem_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, Span<float> out) {
  return elem_decode_host<F>(desc, ctx, payload, false, 0.0f, out);
}
template <Fmt F>
Status elem_accumulate(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  return elem_decode_host<F>(desc, ctx, payload, true, alpha, out);
}

template <Fmt F>
CompressorOps elem_ops() {
  CompressorOps ops;
  ops.payload_bytes = elem_payload_bytes<F>;
  ops.compress = elem_compress_host<F>;
  ops.decompress = elem_decompress<F>;
  ops.decompress_accumulate = elem_accumulate<F>;
  return ops;
}

// ---- sign bits (sign and blocksign) ----------------------------------------------------------

// Packs bit i = (in[i] < 0) into ceil(n/32) words (zero padding), 32 elements per register
// word; returns the first non-finite index (check only) or kNone.
template <class Space>
std::uint64_t pack_signs(UView<const float, Space> in, UView<std::uint32_t, Space> words,
                         bool check) {
  const std::uint64_t n = in.extent(0);
  const std::uint64_t nw = (n + 31) / 32;
  constexpr std::uint64_t kWordsPerChunk = kChunk / 32;
  const std::uint64_t nc = (nw + kWordsPerChunk - 1) / kWordsPerChunk;
  std::uint64_t first = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::pack_signs", Range<Space>(0, nc),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& m) {
        const std::uint64_t w0 = c * kWordsPerChunk;
        const std::uint64_t w1 = w0 + kWordsPerChunk < nw ? w0 + kWordsPerChunk : nw;
        bool bad = false;
        for (std::uint64_t w = w0; w < w1; ++w) {
          const std::uint64_t b = 32 * w;
          std::uint32_t bits = 0;
          if (b + 32 <= n) {
            // 0/1 flags as bytes (a vectorised compare), then 8 flags -> 8 bits with one
            // multiply: byte i of v lands on bit 56 + i. 2.3x faster than shift-or per element.
            std::uint8_t f[32];
            std::uint32_t inf_nan = 0;  // integer OR keeps the loop vectorisable (a bool does not)
            const float* x = &in(b);
            for (std::uint32_t j = 0; j < 32; ++j) {
              f[j] = static_cast<std::uint8_t>(x[j] < 0.0f);
              inf_nan |=
                  static_cast<std::uint32_t>((float_bits(x[j]) & 0x7F800000u) == 0x7F800000u);
            }
            bad |= inf_nan != 0;
            for (std::uint32_t q = 0; q < 4; ++q) {
              std::uint64_t v;
              ::memcpy(&v, f + 8 * q, 8);
              bits |= static_cast<std::uint32_t>((v * 0x0102040810204080ull) >> 56) << (8 * q);
            }
          } else {
            for (std::uint32_t j = 0; b + j < n; ++j) {
              const float x = in(b + j);
              bits |= static_cast<std::uint32_t>(x < 0.0f) << j;
              bad |= nonfinite_bits(x);
            }
          }
          words(w) = bits;
        }
        if (!check || !bad) return;
        const std::uint64_t e = 32 * w1 < n ? 32 * w1 : n;
        for (std::uint64_t i = 32 * w0; i < e; ++i) {
          if (nonfinite_bits(in(i))) {
            m = min_u64(m, i);
            return;
          }
        }
      },
      Kokkos::Min<std::uint64_t>(first));
  return first;
}

std::uint64_t sign_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + packed_bytes(desc.n, 1);
}

Status sign_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  std::vector<std::uint8_t>& out = scratch();
  GRADCOMP_TRY(new_payload(desc, ctx, desc.n, packed_bytes(desc.n, 1), out));
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  const std::uint64_t bad = pack_signs<Exec>(
      UView<const float>(in.data(), in.size()),
      UView<std::uint32_t>(reinterpret_cast<std::uint32_t*>(out.data() + kHeaderBytes),
                           (desc.n + 31) / 32),
      check);
  if (check && bad != kNone) return nonfinite_status(desc, in, bad);
  payload.swap(out);
  return Status::success();
}

// The padding bits of the last sign word (bits n..32*ceil(n/32)-1) must be zero.
bool sign_padding_ok(const std::uint32_t* words, std::uint64_t n) {
  if (n % 32 == 0) return true;
  return (words[n / 32] >> (n % 32)) == 0;
}

// s with its sign bit flipped iff bit 0 of `bit` is set: exactly the reference's `bit ? -s : s`
// (also for 0 and NaN), but branch-free: random signs would mispredict half the branches.
KOKKOS_INLINE_FUNCTION float flip(float s, std::uint32_t bit) {
  return bits_float(float_bits(s) ^ ((bit & 1u) << 31));
}

// Decodes sign bits with per-block scales: out[j] = bit ? -s_b : s_b for j in block b (s = 1
// when scales == nullptr: sign, blocksign scale=none). Whole words inside a block take a fixed
// 32-iteration loop the compiler vectorises; block heads/tails go element by element. Bit j is
// tested against a per-lane mask (bit_of[j]) rather than shifted out: SSE2 has no per-lane
// variable shift, so `bits >> j` kept the word loop scalar (3-5x slower).
template <bool Acc>
void decode_signs_t(const std::uint32_t* words, const std::vector<std::uint64_t>& offs,
                    const float* scales, float alpha, Span<float> out) {
  float* o = out.data();
  const double a = static_cast<double>(alpha);
  const std::uint64_t* off = offs.data();
  Kokkos::parallel_for(
      "gradcomp::kk::decode_signs", Range<>(0, offs.size() - 1),
      KOKKOS_LAMBDA(const std::uint64_t b) {
        const float s = scales ? scales[b] : 1.0f;
        const std::uint64_t e = off[b + 1];
        std::uint64_t i = off[b];
        for (; i < e && i % 32 != 0; ++i) put(o, i, flip(s, words[i / 32] >> (i % 32)), Acc, a);
        std::uint32_t bit_of[32];
        for (std::uint32_t j = 0; j < 32; ++j) bit_of[j] = 1u << j;
        const std::uint32_t sb = float_bits(s);
        // Accumulate adds alpha * D = alpha * (+-s). Unless alpha or s is NaN, alpha * -s is
        // exactly -(alpha * s) (round to nearest is sign-symmetric): one double with a
        // per-element sign flip, saving a float->double conversion and a multiply per element.
        // A NaN keeps the per-element product, whose NaN sign is the reference's. (Not tested
        // by computing alpha * -s: GCC folds that to -(alpha * s).)
        const std::uint64_t pb = double_bits(a * static_cast<double>(s));
        const bool flip_ok =
            (double_bits(a) & ~(std::uint64_t{1} << 63)) <= 0x7FF0000000000000ull &&
            (sb & 0x7FFFFFFFu) <= 0x7F800000u;
        for (; i + 32 <= e; i += 32) {
          const std::uint32_t bits = words[i / 32];
          float* __restrict ow = o + i;
          std::uint32_t neg[32];
          for (std::uint32_t j = 0; j < 32; ++j)
            neg[j] = (bits & bit_of[j]) != 0 ? 0x80000000u : 0u;
          if (!Acc) {
            for (std::uint32_t j = 0; j < 32; ++j) ow[j] = bits_float(sb ^ neg[j]);
          } else if (flip_ok) {
            for (std::uint32_t j = 0; j < 32; ++j) {
              const double d = bits_double(pb ^ (static_cast<std::uint64_t>(neg[j]) << 32));
              ow[j] = static_cast<float>(static_cast<double>(ow[j]) + d);
            }
          } else {
            for (std::uint32_t j = 0; j < 32; ++j) {
              const double d = a * static_cast<double>(bits_float(sb ^ neg[j]));
              ow[j] = static_cast<float>(static_cast<double>(ow[j]) + d);
            }
          }
        }
        for (; i < e; ++i) put(o, i, flip(s, words[i / 32] >> (i % 32)), Acc, a);
      });
}

// One "block" per chunk of 2^16 elements when there are no scales (work items for a parallel
// backend), else the descriptor's blocks.
void decode_signs(const std::uint32_t* words, const std::vector<Segment>& blocks,
                  const float* scales, bool acc, float alpha, Span<float> out) {
  std::vector<std::uint64_t> offs(1, 0);
  if (scales == nullptr) {
    for (std::uint64_t i = 0; i < out.size();) {
      i = i + 65536 < out.size() ? i + 65536 : out.size();
      offs.push_back(i);
    }
  } else {
    for (const Segment& seg : blocks) offs.push_back(seg.offset + seg.size);
  }
  if (acc) {
    decode_signs_t<true>(words, offs, scales, alpha, out);
  } else {
    decode_signs_t<false>(words, offs, scales, alpha, out);
  }
}

Status sign_decode_host(const CompressorDesc& desc, const CompressContext& ctx,
                        Span<const std::uint8_t> payload, bool acc, float alpha, Span<float> out) {
  ensure_initialized();
  Decoded d;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out.size(), d));
  const std::uint64_t bytes = packed_bytes(desc.n, 1);
  if (d.header.count != desc.n) return corrupt(desc, "count ", d.header.count, " != n ", desc.n);
  if (d.body.size() != bytes) {
    return corrupt(desc, "body is ", d.body.size(), " bytes, expected ", bytes, " for ", desc.n,
                   " bits");
  }
  const auto* words = reinterpret_cast<const std::uint32_t*>(d.body.data());
  if (!sign_padding_ok(words, desc.n)) {
    return corrupt(desc, "padding bits after bit ", desc.n, " are not zero");
  }
  decode_signs(words, {}, nullptr, acc, alpha, out);
  return Status::success();
}

Status sign_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, Span<float> out) {
  return sign_decode_host(desc, ctx, payload, false, 0.0f, out);
}
Status sign_accumulate(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  return sign_decode_host(desc, ctx, payload, true, alpha, out);
}

// ---- blocksign -------------------------------------------------------------------------------

std::uint64_t blocksign_body_bytes(const CompressorDesc& desc, std::uint64_t blocks) {
  return packed_bytes(desc.n, 1) + 4 * (desc.scale == SignScale::kNone ? 0 : blocks);
}

std::uint64_t blocksign_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + blocksign_body_bytes(desc, sign_blocks(desc).size());
}

// Block scales: sum |v| or v^2 in double, in index order within each block (one work item per
// block; ::fabs/::sqrt since Kokkos 3.4 has no Kokkos::fabs/sqrt, CUDA provides both; a
// sequential double chain is what makes the value identical to the reference's: a
// parallel split of one block would need a tolerance), rounded once to f32. A NaN scale is
// stored as the canonical quiet NaN, like qsgd::wire_scale.
template <class Space>
void block_scales(UView<const float, Space> in, UView<const std::uint64_t, Space> off, bool l1,
                  UView<float, Space> scales) {
  // kLanes consecutive blocks of equal length per work item, summed side by side: each block
  // keeps its own in-order chain, but the chains interleave, so the add latency (4 cycles, one
  // element per chain) overlaps across blocks instead of bounding the loop. Uneven groups
  // (the last block, per-segment blocks) sum one block after the other.
  constexpr std::uint64_t kLanes = 8;
  const std::uint64_t nb = scales.extent(0);
  Kokkos::parallel_for(
      "gradcomp::kk::block_scales", Range<Space>(0, (nb + kLanes - 1) / kLanes),
      KOKKOS_LAMBDA(const std::uint64_t g) {
        const std::uint64_t b0 = g * kLanes, b1 = b0 + kLanes < nb ? b0 + kLanes : nb;
        const std::uint64_t len = off(b0 + 1) - off(b0);
        std::uint32_t uneven = b1 - b0 != kLanes;
        for (std::uint64_t b = b0; b < b1; ++b) uneven |= off(b + 1) - off(b) != len;
        double acc[kLanes] = {};
        if (uneven == 0) {
          const float* p = &in(off(b0));
          for (std::uint64_t i = 0; i < len; ++i) {
            for (std::uint64_t k = 0; k < kLanes; ++k) {
              const double x = static_cast<double>(p[k * len + i]);
              acc[k] += l1 ? ::fabs(x) : x * x;
            }
          }
        } else {
          for (std::uint64_t b = b0; b < b1; ++b) {
            const std::uint64_t e = off(b + 1);
            double a = 0.0;
            for (std::uint64_t i = off(b); i < e; ++i) {
              const double x = static_cast<double>(in(i));
              a += l1 ? ::fabs(x) : x * x;
            }
            acc[b - b0] = a;
          }
        }
        for (std::uint64_t b = b0; b < b1; ++b) {
          const double dn = static_cast<double>(off(b + 1) - off(b));
          const double sum = acc[b - b0];
          float s =
              l1 ? static_cast<float>(sum / dn) : static_cast<float>(::sqrt(sum) / ::sqrt(dn));
          if (s != s) s = bits_float(0x7FC00000u);
          scales(b) = s;
        }
      });
}

Status blocksign_compress(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const std::vector<Segment> blocks = sign_blocks(desc);
  std::vector<std::uint8_t>& out = scratch();
  GRADCOMP_TRY(
      new_payload(desc, ctx, blocks.size(), blocksign_body_bytes(desc, blocks.size()), out));
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  std::uint8_t* body = out.data() + kHeaderBytes;
  UView<const float> vin(in.data(), in.size());
  const std::uint64_t bad = pack_signs<Exec>(
      vin, UView<std::uint32_t>(reinterpret_cast<std::uint32_t*>(body), (desc.n + 31) / 32), check);
  if (check && bad != kNone) return nonfinite_status(desc, in, bad);
  if (desc.scale != SignScale::kNone) {
    std::vector<std::uint64_t> offs(blocks.size() + 1, 0);
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      offs[b + 1] = blocks[b].offset + blocks[b].size;
    }
    block_scales<Exec>(
        vin, UView<const std::uint64_t>(offs.data(), offs.size()), desc.scale == SignScale::kL1,
        UView<float>(reinterpret_cast<float*>(body + packed_bytes(desc.n, 1)), blocks.size()));
  }
  payload.swap(out);
  return Status::success();
}

Status blocksign_decode_host(const CompressorDesc& desc, const CompressContext& ctx,
                             Span<const std::uint8_t> payload, bool acc, float alpha,
                             Span<float> out) {
  ensure_initialized();
  Decoded d;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out.size(), d));
  const std::vector<Segment> blocks = sign_blocks(desc);
  const std::uint64_t expected = blocksign_body_bytes(desc, blocks.size());
  if (d.header.flags != 0) {
    return corrupt(desc, "flags 0x", std::hex, int(d.header.flags),
                   " set, but this compressor has no dense form");
  }
  if (d.header.count != blocks.size()) {
    return corrupt(desc, "count ", d.header.count, " != ", blocks.size(), " blocks");
  }
  if (d.body.size() != expected) {
    return corrupt(desc, "body is ", d.body.size(), " bytes, expected ", expected);
  }
  const auto* words = reinterpret_cast<const std::uint32_t*>(d.body.data());
  if (!sign_padding_ok(words, desc.n)) {
    return corrupt(desc, "padding bits after sign bit ", desc.n, " are not zero");
  }
  const float* scales = nullptr;
  if (desc.scale != SignScale::kNone) {
    scales = reinterpret_cast<const float*>(d.body.data() + packed_bytes(desc.n, 1));
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      const float s = scales[b];
      if (std::signbit(s))
        return corrupt(desc, "scale[", b, "] = ", s, " is negative (sign bit set)");
      if (desc.nonfinite == NonfinitePolicy::kError && !std::isfinite(s)) {
        return corrupt(desc, "scale[", b, "] = ", s, " is not finite");
      }
    }
  }
  decode_signs(words, blocks, scales, acc, alpha, out);
  return Status::success();
}

Status blocksign_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                            Span<const std::uint8_t> payload, Span<float> out) {
  return blocksign_decode_host(desc, ctx, payload, false, 0.0f, out);
}
Status blocksign_accumulate(const CompressorDesc& desc, const CompressContext& ctx,
                            Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  return blocksign_decode_host(desc, ctx, payload, true, alpha, out);
}

}  // namespace

void register_streaming_kernels(KkTable& table) {
  table[CompressorKind::kIdentity] = KkOps{nullptr, elem_ops<Fmt::kF32>()};
  table[CompressorKind::kFp16] = KkOps{nullptr, elem_ops<Fmt::kF16>()};
  table[CompressorKind::kBf16] = KkOps{nullptr, elem_ops<Fmt::kBF16>()};
  CompressorOps sign;
  sign.payload_bytes = sign_payload_bytes;
  sign.compress = sign_compress;
  sign.decompress = sign_decompress;
  sign.decompress_accumulate = sign_accumulate;
  table[CompressorKind::kSign] = KkOps{nullptr, sign};
  CompressorOps bs;
  bs.payload_bytes = blocksign_payload_bytes;
  bs.compress = blocksign_compress;
  bs.decompress = blocksign_decompress;
  bs.decompress_accumulate = blocksign_accumulate;
  table[CompressorKind::kBlockSign] = KkOps{nullptr, bs};
}

}  // namespace gradcomp::kk
