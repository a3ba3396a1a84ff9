// QSGD (per-bucket stochastic quantization) and the Qsparse compositions qsgd_topk / qsgd_randk
// (ref_qsgd.cpp, ref_qsgd_common.hpp, ref_qsparse.cpp): same rounding uniforms (Philox keyed by
// the global element index), same double arithmetic, codes packed 32 elements at a time (32
// codes of b bits are exactly b whole words, so groups never share a word).
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kk_sel_common.hpp"

namespace gradcomp::kk::sel {
namespace {

// ---- element arithmetic (copies of ref::detail::qsgd, callable in kernels) -------------------

KOKKOS_INLINE_FUNCTION std::uint32_t quantize(float v, float norm, std::uint32_t levels, float u) {
  if (norm == 0.0f) return 0;
  const double s = static_cast<double>(levels);
  const double a = static_cast<double>(bits_float(float_bits(v) & 0x7FFFFFFFu));
  const double r = s * a / static_cast<double>(norm);
  std::uint32_t level;
  if (r != r || r >= s) {
    level = levels;  // NaN ratio (propagate only) or |v| == N
  } else {
    // r in [0, s) and s <= 2^30: truncation is floor.
    const std::uint32_t l = static_cast<std::uint32_t>(r);
    const double p = r - static_cast<double>(l);
    level = l + (static_cast<double>(u) < p ? 1u : 0u);
  }
  const std::uint32_t sign = (v < 0.0f && level > 0) ? 1u : 0u;
  return sign | (level << 1);
}

KOKKOS_INLINE_FUNCTION float dequantize(std::uint32_t code, float norm, std::uint32_t levels,
                                        double factor) {
  const double level = static_cast<double>(code >> 1);
  const double signed_level = (code & 1u) ? -level : level;
  return static_cast<float>(static_cast<double>(norm) * signed_level / static_cast<double>(levels) *
                            factor);
}

// The norm over v[begin, end): sqrt(sum v^2) or max |v| in double, in index order (exact match
// of the reference; a parallel split of one bucket would need a tolerance). NaN -> NaN.
struct NormResult {
  float norm;
  std::uint64_t first_bad;
};
template <class Get>
KOKKOS_INLINE_FUNCTION NormResult bucket_norm(Get get, std::uint64_t begin, std::uint64_t end,
                                              bool l2) {
  double acc = 0.0;
  bool has_nan = false;
  std::uint64_t bad = kNone;
  for (std::uint64_t j = begin; j < end; ++j) {
    const float x = get(j);
    const std::uint32_t key = abs_key(x);
    if (key_nonfinite(key) && bad == kNone) bad = j;
    has_nan |= key == kNanKey;
    const double a = static_cast<double>(bits_float(float_bits(x) & 0x7FFFFFFFu));
    if (l2) {
      acc += a * a;
    } else if (a > acc) {
      acc = a;
    }
  }
  float norm;
  if (has_nan) {
    norm = bits_float(0x7FC00000u);
  } else {
    norm = static_cast<float>(l2 ? std::sqrt(acc) : acc);
  }
  return {norm, bad};
}

// The f32 written for a norm: NaN as the canonical quiet NaN (qsgd::wire_scale).
KOKKOS_INLINE_FUNCTION float wire_scale(float x) { return x != x ? bits_float(0x7FC00000u) : x; }

KOKKOS_INLINE_FUNCTION std::uint32_t code_at(const UView<const std::uint32_t>& words,
                                             std::uint64_t j, std::uint32_t bits) {
  const std::uint64_t pos = j * bits;
  const std::uint64_t w = pos >> 5;
  const std::uint32_t sh = static_cast<std::uint32_t>(pos & 31u);
  std::uint64_t win = words(w);
  if (sh + bits > 32) win |= static_cast<std::uint64_t>(words(w + 1)) << 32;
  const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
  return static_cast<std::uint32_t>((win >> sh) & mask);
}

// Buckets: fixed size (size > 0) or the given offsets (one per tensor segment).
struct Buckets {
  std::uint64_t size = 0;
  std::uint64_t count = 0;
  std::uint64_t n = 0;
  UView<const std::uint64_t> offsets;  // count + 1 entries when size == 0
  KOKKOS_INLINE_FUNCTION std::uint64_t begin(std::uint64_t b) const {
    return size ? b * size : offsets(b);
  }
  KOKKOS_INLINE_FUNCTION std::uint64_t end(std::uint64_t b) const {
    if (size == 0) return offsets(b + 1);
    const std::uint64_t e = (b + 1) * size;
    return e < n ? e : n;
  }
  KOKKOS_INLINE_FUNCTION std::uint64_t of(std::uint64_t j) const {
    if (size) return j / size;
    std::uint64_t lo = 0, hi = count;  // offsets(lo) <= j < offsets(hi)
    while (hi - lo > 1) {
      const std::uint64_t mid = (lo + hi) / 2;
      if (offsets(mid) <= j)
        lo = mid;
      else
        hi = mid;
    }
    return lo;
  }
};

Buckets make_buckets(const CompressorDesc& desc, std::vector<std::uint64_t>& storage) {
  Buckets b;
  b.n = desc.n;
  if (desc.bucket > 0) {
    b.size = desc.bucket;
    b.count = (desc.n + desc.bucket - 1) / desc.bucket;
    return b;
  }
  const std::vector<Segment> segs = tensor_segments(desc);
  storage.clear();
  for (const Segment& s : segs) storage.push_back(s.offset);
  storage.push_back(desc.n);
  b.count = segs.size();
  b.offsets = UView<const std::uint64_t>(storage.data(), storage.size());
  return b;
}

std::uint64_t qsgd_body_bytes(const CompressorDesc& desc, std::uint64_t buckets) {
  return packed_bytes(desc.n, 1 + qsgd_level_bits(desc.levels)) + 4 * buckets;
}

std::uint64_t qsgd_payload_bytes(const CompressorDesc& desc) {
  std::vector<std::uint64_t> st;
  return kHeaderBytes + qsgd_body_bytes(desc, make_buckets(desc, st).count);
}

// Packs codes of `count` elements, 32 per work item; code(i) gives element i's code.
template <class CodeFn>
void pack_codes(std::uint64_t count, std::uint32_t bits, UView<std::uint32_t> words, CodeFn code) {
  const std::uint64_t groups = (count + 31) / 32;
  const std::uint64_t nwords = words.extent(0);
  Kokkos::parallel_for(
      "gradcomp::kk::qsgd_pack", Range<>(0, groups), KOKKOS_LAMBDA(const std::uint64_t g) {
        const std::uint64_t first = 32 * g;
        const std::uint64_t last = first + 32 < count ? first + 32 : count;
        std::uint64_t w = g * bits;
        std::uint64_t acc = 0;
        std::uint32_t fill = 0;
        for (std::uint64_t i = first; i < last; ++i) {
          acc |= static_cast<std::uint64_t>(code(i)) << fill;
          fill += bits;
          if (fill >= 32) {
            words(w++) = static_cast<std::uint32_t>(acc);
            acc >>= 32;
            fill -= 32;
          }
        }
        if (fill > 0 && w < nwords) words(w) = static_cast<std::uint32_t>(acc);
      });
}

Status qsgd_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  std::vector<std::uint64_t> st;
  const Buckets bk = make_buckets(desc, st);
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const std::uint64_t codes_bytes = packed_bytes(desc.n, bits);
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, bk.count, 0, qsgd_body_bytes(desc, bk.count), p));
  std::uint8_t* body = p.data() + kHeaderBytes;
  const UView<const float> x = view_of(in);
  const bool l2 = desc.norm == QsgdNorm::kL2;
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  // Pass 1: the bucket norms, finiteness check fused.
  std::vector<float> norms(bk.count);
  const UView<float> nv(norms.data(), bk.count);
  const UView<float> wire(reinterpret_cast<float*>(body + codes_bytes), bk.count);
  std::uint64_t bad = kNone;
  const std::uint64_t nb = bk.count;
  Kokkos::parallel_reduce(
      "gradcomp::kk::qsgd_norms", Range<>(0, (nb + 7) / 8),
      KOKKOS_LAMBDA(const std::uint64_t g, std::uint64_t& m) {
        const std::uint64_t b0 = 8 * g;
        if (bk.size > 0 && b0 + 8 <= nb && bk.end(b0 + 7) - bk.begin(b0 + 7) == bk.size) {
          // Eight full buckets in lockstep: each sum still runs in index order (exact), but
          // eight independent chains hide the latency of the double additions.
          const std::uint64_t size = bk.size, base = bk.begin(b0);
          double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          bool any = false;
          for (std::uint64_t j = 0; j < size; ++j) {
            for (int t = 0; t < 8; ++t) {
              const float xv = x(base + static_cast<std::uint64_t>(t) * size + j);
              any |= key_nonfinite(abs_key(xv));
              const double a = static_cast<double>(bits_float(float_bits(xv) & 0x7FFFFFFFu));
              if (l2) {
                acc[t] += a * a;
              } else if (a > acc[t]) {
                acc[t] = a;
              }
            }
          }
          if (!any) {
            for (int t = 0; t < 8; ++t) {
              const float norm = static_cast<float>(l2 ? std::sqrt(acc[t]) : acc[t]);
              nv(b0 + static_cast<std::uint64_t>(t)) = norm;
              wire(b0 + static_cast<std::uint64_t>(t)) = norm;
            }
            return;
          }
        }
        const std::uint64_t b1 = b0 + 8 < nb ? b0 + 8 : nb;
        for (std::uint64_t b = b0; b < b1; ++b) {
          const NormResult r =
              bucket_norm([&](std::uint64_t j) { return x(j); }, bk.begin(b), bk.end(b), l2);
          nv(b) = r.norm;
          wire(b) = wire_scale(r.norm);
          if (check && r.first_bad < m) m = r.first_bad;
        }
      },
      Kokkos::Min<std::uint64_t>(bad));
  if (bad != kNone) return nonfinite_status(desc, in, bad);
  // Pass 2: quantize and pack.
  const RngStream rng(desc.seed, RngPurpose::kQsgdRounding, ctx.step, ctx.tensor_id, ctx.rank);
  const std::uint32_t levels = desc.levels;
  const std::uint64_t n = desc.n;
  const UView<std::uint32_t> words(reinterpret_cast<std::uint32_t*>(body), codes_bytes / 4);
  const std::uint64_t nwords = codes_bytes / 4;
  Kokkos::parallel_for(
      "gradcomp::kk::qsgd_encode", Range<>(0, (n + 31) / 32), KOKKOS_LAMBDA(const std::uint64_t g) {
        const std::uint64_t first = 32 * g;
        const std::uint32_t cnt = static_cast<std::uint32_t>(n - first < 32 ? n - first : 32);
        // Uniforms first, in their own loop (independent Philox evaluations).
        float u[32];
        for (std::uint32_t e = 0; e < 32; ++e) u[e] = rng.uniform_float(first + e);
        std::uint32_t code[32];
        std::uint64_t b = bk.of(first);
        std::uint64_t bend = bk.end(b);
        float norm = nv(b);
        for (std::uint32_t e = 0; e < cnt; ++e) {
          const std::uint64_t j = first + e;
          if (j >= bend) {
            ++b;
            bend = bk.end(b);
            norm = nv(b);
          }
          code[e] = quantize(x(j), norm, levels, u[e]);
        }
        std::uint64_t w = g * bits;
        std::uint64_t acc = 0;
        std::uint32_t fill = 0;
        for (std::uint32_t e = 0; e < cnt; ++e) {
          acc |= static_cast<std::uint64_t>(code[e]) << fill;
          fill += bits;
          if (fill >= 32) {
            words(w++) = static_cast<std::uint32_t>(acc);
            acc >>= 32;
            fill -= 32;
          }
        }
        if (fill > 0 && w < nwords) words(w) = static_cast<std::uint32_t>(acc);
      });
  payload.swap(p);
  return Status::success();
}

Status check_norm(float norm, NonfinitePolicy policy, const char* what, std::uint64_t index) {
  GRADCOMP_CHECK_PAYLOAD(!std::signbit(norm), what, "[", index, "] = ", norm,
                         " is negative (sign bit set)");
  GRADCOMP_CHECK_PAYLOAD(policy == NonfinitePolicy::kPropagate || std::isfinite(norm), what, "[",
                         index, "] = ", norm, " is not finite");
  return Status::success();
}

KOKKOS_INLINE_FUNCTION bool code_ok(std::uint32_t code, float norm, std::uint32_t levels) {
  const std::uint32_t level = code >> 1;
  return level <= levels && (level != 0 || (code & 1u) == 0) && (level == 0 || norm != 0.0f);
}

Status describe_code(std::uint32_t code, float norm, std::uint32_t levels, std::uint64_t j) {
  const std::uint32_t level = code >> 1;
  GRADCOMP_CHECK_PAYLOAD(level <= levels, "code[", j, "] has level ", level,
                         " > levels s = ", levels);
  GRADCOMP_CHECK_PAYLOAD(level != 0 || (code & 1u) == 0, "code[", j,
                         "] has level 0 with the sign bit set (non-canonical -0)");
  return make_status(StatusCode::kCorruptPayload, "code[", j, "] has level ", level,
                     " in a bucket whose norm is ", norm);
}

bool padding_ok(const std::uint8_t* codes, std::uint64_t used_bits, std::uint64_t bytes) {
  if (used_bits % 32 == 0) return true;
  return (load_u32(codes + bytes - 4) >> (used_bits % 32)) == 0;
}

bool norm_bad(float norm, bool check) {
  return std::signbit(norm) || (check && !std::isfinite(norm));
}

// ---- decode fast path: fixed buckets of a multiple of 32 elements, codes of <= 8 bits -------
// Every bucket then starts on a word boundary (32 codes of B bits are B whole words), so a work
// item is one bucket. B is a template parameter: each of the 32 codes of a group is a shift and
// mask by constants after unrolling (no refill branch, no per-element bucket test).

constexpr std::uint32_t kFastMaxBits = 8;
constexpr std::uint32_t kFastMaxCodes = 1u << kFastMaxBits;

// Calls f(e, code) for the 32 codes of the group starting at w. The caller's work is fused
// into the unrolled loop: staging the codes in an array and re-reading them as vectors stalls
// on store forwarding.
template <std::uint32_t B, class F>
KOKKOS_FORCEINLINE_FUNCTION void for_codes32(const std::uint32_t* __restrict w, F f) {
  constexpr std::uint32_t mask = (1u << B) - 1;
#pragma GCC unroll 32
  for (std::uint32_t e = 0; e < 32; ++e) {
    const std::uint32_t pos = e * B, wi = pos >> 5, sh = pos & 31u;
    std::uint64_t win = w[wi];
    if (sh + B > 32) win |= static_cast<std::uint64_t>(w[wi + 1]) << 32;
    f(e, static_cast<std::uint32_t>(win >> sh) & mask);
  }
}

bool fast_decode_ok(const Buckets& bk, std::uint32_t bits, std::uint32_t levels) {
  // The per-bucket table costs 2 * levels + 2 divisions; keep it below the bucket's size.
  return bk.size > 0 && bk.size % 32 == 0 && bits <= kFastMaxBits &&
         2 * static_cast<std::uint64_t>(levels) + 2 <= bk.size;
}

// v in every second B-bit field of a 64-bit word, starting at field 0.
template <std::uint32_t B>
constexpr std::uint64_t even_fields(std::uint64_t v) {
  std::uint64_t r = 0;
  for (std::uint32_t i = 0; i < 64; i += 2 * B) r |= v << i;
  return r;
}

// Nonzero iff one of the 64 / B codes in x (B divides 32, so no code straddles) is > maxok
// or == 1. SWAR on the even and odd fields separately, so the empty field above each acts as
// a guard: code + (2^B - 1 - maxok) carries out iff code > maxok, code + (2^B - 2) iff
// code >= 2. Plain 64-bit and/add/shift: vectorisable with SSE2.
template <std::uint32_t B>
KOKKOS_FORCEINLINE_FUNCTION std::uint64_t bad_codes64(std::uint64_t x, std::uint64_t kmax) {
  constexpr std::uint64_t mask = (std::uint64_t{1} << B) - 1;
  constexpr std::uint64_t even = even_fields<B>(mask), low = even_fields<B>(1);
  constexpr std::uint64_t carry = low << B, k2 = even_fields<B>(mask - 1);
  std::uint64_t bad = 0;
  for (const std::uint64_t f : {x & even, (x >> B) & even}) {
    bad |= (f + kmax) & carry;                    // code > maxok
    bad |= f & low & ~(((f + k2) & carry) >> B);  // code == 1
  }
  return bad;
}

// Code validation (see qsgd_decode): returns 2 * j + 1 of the first bad code, or kNone.
template <std::uint32_t B>
std::uint64_t check_codes_fast(const Buckets& bk, const UView<const std::uint32_t>& words,
                               const UView<const float>& norms, std::uint32_t levels) {
  std::uint64_t bad = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::qsgd_check_codes_fast", Range<>(0, bk.count),
      KOKKOS_LAMBDA(const std::uint64_t b, std::uint64_t& m) {
        const std::uint64_t begin = bk.begin(b), end = bk.end(b);
        // Valid codes of a bucket are 0, 2 .. 2 * levels + 1 (sign | level << 1), or only 0
        // when its norm is zero: one compare against the largest valid code plus code == 1.
        const std::uint32_t maxok = float_bits(norms(b)) << 1 != 0u ? 2 * levels + 1 : 0u;
        const std::uint32_t* __restrict wb = words.data() + begin / 32 * B;
        const std::uint64_t full = (end - begin) / 32;
        std::uint32_t any = 0;  // an integer OR, not a bool, keeps the loop branch-free
        if constexpr (32 % B == 0) {
          // full * B is even: whole 64-bit pairs of words (little-endian keeps code order).
          const std::uint64_t kmax = even_fields<B>(((std::uint64_t{1} << B) - 1) - maxok);
          std::uint64_t bad64 = 0;
          for (std::uint64_t i = 0; i < full * B; i += 2)
            bad64 |= bad_codes64<B>(wb[i] | static_cast<std::uint64_t>(wb[i + 1]) << 32, kmax);
          any = bad64 != 0;
        } else {
          for (std::uint64_t g = 0; g < full; ++g) {
            for_codes32<B>(wb + g * B, [&](std::uint32_t, std::uint32_t c) {
              any |= static_cast<std::uint32_t>(c > maxok) | (c == 1u);
            });
          }
        }
        for (std::uint64_t j = begin + 32 * full; j < end; ++j) {
          const std::uint32_t c = code_at(words, j, B);
          any |= static_cast<std::uint32_t>(c > maxok) | (c == 1u);
        }
        if (!any) return;
        for (std::uint64_t j = begin; j < end; ++j) {
          if (!code_ok(code_at(words, j, B), norms(b), levels)) {
            if (2 * j + 1 < m) m = 2 * j + 1;
            return;
          }
        }
      },
      Kokkos::Min<std::uint64_t>(bad));
  return bad;
}

// Decode of validated codes: a per-bucket table of the decoded value of every valid code (the
// reference's expression, so bit-identical, NaN/inf norms included); for accumulate the table
// holds alpha * f64(value), so each element is f32(f64(out) + table[code]).
template <std::uint32_t B, bool kAccumulate>
void decode_fast(const Buckets& bk, const UView<const std::uint32_t>& words,
                 const UView<const float>& norms, std::uint32_t levels, double a,
                 const UView<float>& o) {
  const double s = static_cast<double>(levels);
  const std::uint32_t ncodes = 2 * levels + 2;
  Kokkos::parallel_for(
      "gradcomp::kk::qsgd_decode_fast", Range<>(0, bk.count), KOKKOS_LAMBDA(const std::uint64_t b) {
        const std::uint64_t begin = bk.begin(b), end = bk.end(b);
        const double norm = static_cast<double>(norms(b));
        float tab[kFastMaxCodes];
        double tabd[kFastMaxCodes];
        for (std::uint32_t c = 0; c < ncodes; ++c) {
          // dequantize(c, norm, s, 1): factor 1 is exact, so it is left out.
          const double level = static_cast<double>(c >> 1);
          const float v = static_cast<float>(norm * ((c & 1u) ? -level : level) / s);
          tab[c] = v;
          tabd[c] = a * static_cast<double>(v);
        }
        const std::uint32_t* __restrict wb = words.data() + begin / 32 * B;
        float* __restrict ob = o.data() + begin;
        const std::uint64_t full = (end - begin) / 32;
        if constexpr (B == 2) {
          // levels = 1: a 16-entry table of value pairs, one lookup per nibble (two codes)
          // halves the shift/mask/lookup work per element.
          float tab2[16][2];
          double tabd2[16][2];
          for (std::uint32_t q = 0; q < 16; ++q) {
            tab2[q][0] = tab[q & 3u];
            tab2[q][1] = tab[q >> 2];
            tabd2[q][0] = tabd[q & 3u];
            tabd2[q][1] = tabd[q >> 2];
          }
          for (std::uint64_t i = 0; i < 2 * full; ++i) {
            const std::uint32_t x = wb[i];
            float* __restrict o16 = ob + 16 * i;
#pragma GCC unroll 8
            for (std::uint32_t k = 0; k < 8; ++k) {
              const std::uint32_t q = (x >> (4 * k)) & 15u;
              for (std::uint32_t l = 0; l < 2; ++l) {
                if (kAccumulate) {
                  o16[2 * k + l] =
                      static_cast<float>(static_cast<double>(o16[2 * k + l]) + tabd2[q][l]);
                } else {
                  o16[2 * k + l] = tab2[q][l];
                }
              }
            }
          }
        } else {
          for (std::uint64_t g = 0; g < full; ++g) {
            float* __restrict og = ob + 32 * g;
            for_codes32<B>(wb + g * B, [&](std::uint32_t e, std::uint32_t c) {
              if (kAccumulate) {
                og[e] = static_cast<float>(static_cast<double>(og[e]) + tabd[c]);
              } else {
                og[e] = tab[c];
              }
            });
          }
        }
        for (std::uint64_t j = begin + 32 * full; j < end; ++j) {
          const std::uint32_t c = code_at(words, j, B);
          if (kAccumulate) {
            o(j) = static_cast<float>(static_cast<double>(o(j)) + tabd[c]);
          } else {
            o(j) = tab[c];
          }
        }
      });
}

// Runs f.template operator()<B>() for the runtime code width bits in [2, kFastMaxBits].
template <class F>
auto with_bits(std::uint32_t bits, F f) {
  switch (bits) {
    case 2: return f(std::integral_constant<std::uint32_t, 2>{});
    case 3: return f(std::integral_constant<std::uint32_t, 3>{});
    case 4: return f(std::integral_constant<std::uint32_t, 4>{});
    case 5: return f(std::integral_constant<std::uint32_t, 5>{});
    case 6: return f(std::integral_constant<std::uint32_t, 6>{});
    case 7: return f(std::integral_constant<std::uint32_t, 7>{});
    default: return f(std::integral_constant<std::uint32_t, 8>{});
  }
}

template <bool kAccumulate>
Status qsgd_decode(const CompressorDesc& desc, const CompressContext& ctx,
                   Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  const char* name = compressor_name(desc.kind);
  auto fail = [&](const Status& st) { return make_status(st.code(), name, ": ", st.message()); };
  const Span<const std::uint8_t> body(payload.data() + kHeaderBytes, h.body_bytes);
  std::vector<std::uint64_t> st;
  const Buckets bk = make_buckets(desc, st);
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const std::uint64_t codes_bytes = packed_bytes(desc.n, bits);
  if (h.flags != 0)
    return fail(make_status(StatusCode::kCorruptPayload, "flags 0x", std::hex, int(h.flags),
                            " set, but this compressor has no dense form"));
  if (h.count != bk.count)
    return fail(
        make_status(StatusCode::kCorruptPayload, "count ", h.count, " != ", bk.count, " buckets"));
  if (body.size() != qsgd_body_bytes(desc, bk.count))
    return fail(make_status(StatusCode::kCorruptPayload, "body is ", body.size(),
                            " bytes, expected ", qsgd_body_bytes(desc, bk.count), " (", desc.n,
                            " codes of ", bits, " bits + ", bk.count, " norms)"));
  if (!padding_ok(body.data(), desc.n * bits, codes_bytes))
    return fail(make_status(StatusCode::kCorruptPayload, "padding bits after code ", desc.n,
                            " are not zero"));
  const UView<const std::uint32_t> words = u32_view(body.data(), codes_bytes / 4);
  const UView<const float> norms = f32_view(body.data() + codes_bytes, bk.count);
  const std::uint32_t levels = desc.levels;
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  // Validation pass, 32 codes per work item: the reference checks bucket b's norm, then its
  // codes, bucket by bucket; key 2 * begin(b) for a bad norm and 2 * j + 1 for a bad code
  // keeps that order.
  const std::uint64_t n = desc.n;
  const std::uint64_t groups = (n + 31) / 32;
  std::uint64_t bad = kNone;
  const std::uint64_t nb = bk.count;
  Kokkos::parallel_reduce(
      "gradcomp::kk::qsgd_check_norms", Range<>(0, nb),
      KOKKOS_LAMBDA(const std::uint64_t b, std::uint64_t& m) {
        const std::uint32_t nbits = float_bits(norms(b));
        const bool bad_norm =
            ((nbits >> 31) != 0) | (check & ((nbits & 0x7F800000u) == 0x7F800000u));
        if (bad_norm && 2 * bk.begin(b) < m) m = 2 * bk.begin(b);
      },
      Kokkos::Min<std::uint64_t>(bad));
  const bool fast = fast_decode_ok(bk, bits, levels);
  std::uint64_t bad_code = kNone;
  if (fast) {
    bad_code = with_bits(bits, [&](auto B) {
      return check_codes_fast<decltype(B)::value>(bk, words, norms, levels);
    });
  } else {
    Kokkos::parallel_reduce(
        "gradcomp::kk::qsgd_check_codes", Range<>(0, groups),
        KOKKOS_LAMBDA(const std::uint64_t g, std::uint64_t& m) {
          const std::uint64_t first = 32 * g;
          const std::uint64_t last = first + 32 < n ? first + 32 : n;
          std::uint64_t b = bk.of(first);
          std::uint64_t bend = bk.end(b);
          bool nonzero = float_bits(norms(b)) << 1 != 0u;
          std::uint64_t w = g * bits;
          std::uint64_t acc = 0;
          std::uint32_t fill = 0;
          const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
          bool any = false;
          for (std::uint64_t j = first; j < last; ++j) {
            if (j >= bend) {
              ++b;
              bend = bk.end(b);
              nonzero = float_bits(norms(b)) << 1 != 0u;
            }
            if (fill < bits) {
              acc |= static_cast<std::uint64_t>(words(w++)) << fill;
              fill += 32;
            }
            const std::uint32_t code = static_cast<std::uint32_t>(acc & mask);
            acc >>= bits;
            fill -= bits;
            const std::uint32_t level = code >> 1;
            any |=
                (level > levels) | ((level == 0) & ((code & 1u) != 0)) | ((level != 0) & !nonzero);
          }
          if (!any) return;
          for (std::uint64_t j = first; j < last; ++j) {
            if (!code_ok(code_at(words, j, bits), norms(bk.of(j)), levels)) {
              if (2 * j + 1 < m) m = 2 * j + 1;
              return;
            }
          }
        },
        Kokkos::Min<std::uint64_t>(bad_code));
  }
  if (bad_code < bad) bad = bad_code;
  if (bad != kNone) {
    const std::uint64_t j = bad / 2;
    const std::uint64_t b = bk.of(j);
    const float norm = load_f32(body.data() + codes_bytes + 4 * b);
    if (bad % 2 == 0) return fail(check_norm(norm, desc.nonfinite, "norm", b));
    return fail(describe_code(code_at(words, j, bits), norm, levels, j));
  }
  const UView<float> o = view_of(out);
  const double a = static_cast<double>(alpha);
  if (fast) {
    with_bits(bits, [&](auto B) {
      decode_fast<decltype(B)::value, kAccumulate>(bk, words, norms, levels, a, o);
    });
    return Status::success();
  }
  const double s = static_cast<double>(levels);
  Kokkos::parallel_for(
      "gradcomp::kk::qsgd_decode", Range<>(0, groups), KOKKOS_LAMBDA(const std::uint64_t g) {
        const std::uint64_t first = 32 * g;
        const std::uint64_t last = first + 32 < n ? first + 32 : n;
        std::uint64_t b = bk.of(first);
        std::uint64_t bend = bk.end(b);
        double norm = static_cast<double>(norms(b));
        std::uint64_t w = g * bits;
        std::uint64_t acc = 0;
        std::uint32_t fill = 0;
        const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
        // Unpack (sequential bit stream) into registers first, then the arithmetic in a
        // separate loop the compiler can vectorise (double divide included).
        double nrm[32];
        double sl[32];
        const std::uint32_t cnt = static_cast<std::uint32_t>(last - first);
        for (std::uint32_t e = 0; e < cnt; ++e) {
          if (first + e >= bend) {
            ++b;
            bend = bk.end(b);
            norm = static_cast<double>(norms(b));
          }
          if (fill < bits) {
            acc |= static_cast<std::uint64_t>(words(w++)) << fill;
            fill += 32;
          }
          const std::uint32_t code = static_cast<std::uint32_t>(acc & mask);
          acc >>= bits;
          fill -= bits;
          const double level = static_cast<double>(code >> 1);
          sl[e] = (code & 1u) ? -level : level;
          nrm[e] = norm;
        }
        for (std::uint32_t e = 0; e < cnt; ++e) {
          // dequantize(code, norm, s, 1): factor 1 is exact, so it is left out.
          const float v = static_cast<float>(nrm[e] * sl[e] / s);
          const std::uint64_t j = first + e;
          if (kAccumulate) {
            o(j) = static_cast<float>(static_cast<double>(o(j)) + a * static_cast<double>(v));
          } else {
            o(j) = v;
          }
        }
      });
  return Status::success();
}

// ---- qsgd_topk / qsgd_randk ------------------------------------------------------------------

bool sends_indices(const CompressorDesc& desc) {
  return desc.kind == CompressorKind::kQsgdTopK || desc.indices == IndexMode::kPrivate;
}
bool is_dense(const CompressorDesc& desc, std::uint64_t k) { return desc.n > 0 && k >= desc.n; }

std::uint64_t qsparse_body_bytes(const CompressorDesc& desc, std::uint64_t k) {
  if (is_dense(desc, k)) return 4 * desc.n;
  if (k == 0) return 0;
  return (sends_indices(desc) ? 4 * k : 0) + packed_bytes(k, 1 + qsgd_level_bits(desc.levels)) + 4;
}

std::uint64_t qsparse_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + qsparse_body_bytes(desc, sparsifier_k(desc, desc.n));
}

// random_k_indices of the reference: Floyd's algorithm with the counter RNG. The draws are
// independent (one Philox call each) and computed in a kernel; resolving collisions is
// inherently sequential and runs on the host (O(k) with a bitmap, fine for k << n), then the
// k indices are sorted.
void randk_support(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t k,
                   std::vector<std::uint32_t>& support) {
  const std::uint32_t rank = desc.indices == IndexMode::kShared ? kSharedRank : ctx.rank;
  const RngStream stream(desc.seed, RngPurpose::kRandKIndices, ctx.step, ctx.tensor_id, rank);
  const std::uint64_t n = desc.n;
  std::vector<std::uint64_t> draws(k);
  const UView<std::uint64_t> dv(draws.data(), k);
  const std::uint64_t j0 = n - k;
  Kokkos::parallel_for(
      "gradcomp::kk::randk_draws", Range<>(0, k), KOKKOS_LAMBDA(const std::uint64_t i) {
        const std::uint64_t j = j0 + i;
        dv(i) = stream.uniform_below(j + 1, j);
      });
  std::vector<std::uint64_t> taken((n + 63) / 64, 0);
  support.resize(k);
  for (std::uint64_t i = 0; i < k; ++i) {
    std::uint64_t t = draws[i];
    if ((taken[t / 64] >> (t % 64)) & 1u) t = j0 + i;
    taken[t / 64] |= std::uint64_t{1} << (t % 64);
    support[i] = static_cast<std::uint32_t>(t);
  }
  std::sort(support.begin(), support.end());
}

double scaled_factor(std::uint64_t k, std::uint32_t levels) {
  const double kd = static_cast<double>(k), s = static_cast<double>(levels);
  const double beta = std::min(kd / (s * s), std::sqrt(kd) / s);
  return 1.0 / (1.0 + beta);
}

Status qsparse_compress(const CompressorDesc& desc, const CompressContext& ctx,
                        Span<const float> in, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (is_dense(desc, k)) return write_dense(desc, ctx, in, payload);
  const UView<const float> x = view_of(in);
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  const bool topk = desc.kind == CompressorKind::kQsgdTopK;
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, k, 0, qsparse_body_bytes(desc, k), p));
  if (k == 0 || !topk) {
    // No top-k pass reads the input, so the finiteness check is its own pass here.
    const std::uint64_t bad = check ? first_nonfinite(x) : kNone;
    if (bad != kNone) return nonfinite_status(desc, in, bad);
    if (k == 0) {
      payload.swap(p);
      return Status::success();
    }
  }
  std::vector<std::uint32_t> support(k);
  std::vector<float> values(k);
  const UView<std::uint32_t> sv(support.data(), k);
  const UView<float> vv(values.data(), k);
  if (topk) {
    const std::uint64_t bad = select_topk(x, k, check, sv, vv);
    if (bad != kNone) return nonfinite_status(desc, in, bad);
  } else {
    randk_support(desc, ctx, k, support);
    Kokkos::parallel_for(
        "gradcomp::kk::randk_gather", Range<>(0, k),
        KOKKOS_LAMBDA(const std::uint64_t i) { vv(i) = x(sv(i)); });
  }
  std::uint8_t* q = p.data() + kHeaderBytes;
  if (sends_indices(desc)) {
    std::memcpy(q, support.data(), 4 * k);
    q += 4 * k;
  }
  // One bucket over the k selected values (in index order).
  const bool l2 = desc.norm == QsgdNorm::kL2;
  float norm = 0.0f;
  Kokkos::parallel_reduce(
      "gradcomp::kk::qsparse_norm", Range<>(0, 1),
      KOKKOS_LAMBDA(const std::uint64_t, float& nrm) {
        nrm = bucket_norm([&](std::uint64_t i) { return vv(i); }, 0, k, l2).norm;
      },
      norm);
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const std::uint64_t codes_bytes = packed_bytes(k, bits);
  const RngStream rng(desc.seed, RngPurpose::kQsgdRounding, ctx.step, ctx.tensor_id, ctx.rank);
  const std::uint32_t levels = desc.levels;
  pack_codes(k, bits, UView<std::uint32_t>(reinterpret_cast<std::uint32_t*>(q), codes_bytes / 4),
             [=](std::uint64_t i) {
               // Uniform keyed by the global index, as in the reference.
               return quantize(vv(i), norm, levels, rng.uniform_float(sv(i)));
             });
  store_f32(q + codes_bytes, wire_scale(norm));
  payload.swap(p);
  return Status::success();
}

template <bool kAccumulate>
Status qsparse_decode(const CompressorDesc& desc, const CompressContext& ctx,
                      Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  const char* name = compressor_name(desc.kind);
  auto fail = [&](const Status& st) { return make_status(st.code(), name, ": ", st.message()); };
  const Span<const std::uint8_t> body(payload.data() + kHeaderBytes, h.body_bytes);
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = is_dense(desc, k);
  bool done = false;
  const Status s = decode_if_dense(desc, h, body, k, dense, kAccumulate, alpha, out, done);
  if (!s.ok()) return fail(s);
  if (done) return Status::success();
  if (h.count != k)
    return fail(make_status(StatusCode::kCorruptPayload, "count ", h.count, " != k ", k));
  const std::uint64_t expected = qsparse_body_bytes(desc, k);
  if (body.size() != expected)
    return fail(make_status(StatusCode::kCorruptPayload, "body is ", body.size(),
                            " bytes, expected ", expected, " for k = ", k));
  if (k == 0) {
    apply_sparse(UView<const std::uint32_t>(), UView<const float>(), kAccumulate, alpha,
                 view_of(out));
    return Status::success();
  }
  std::vector<std::uint32_t> regenerated;
  const std::uint8_t* q = body.data();
  UView<const std::uint32_t> support;
  if (sends_indices(desc)) {
    support = u32_view(q, k);
    const std::uint64_t bad = first_bad_index(support, desc.n);
    if (bad != kNone)
      return fail(describe_bad_index(reinterpret_cast<const std::uint32_t*>(q), bad, desc.n));
    q += 4 * k;
  } else {
    randk_support(desc, ctx, k, regenerated);
    support = UView<const std::uint32_t>(regenerated.data(), k);
  }
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const std::uint64_t codes_bytes = packed_bytes(k, bits);
  if (!padding_ok(q, k * bits, codes_bytes))
    return fail(
        make_status(StatusCode::kCorruptPayload, "padding bits after code ", k, " are not zero"));
  const float norm = load_f32(q + codes_bytes);
  if (norm_bad(norm, desc.nonfinite == NonfinitePolicy::kError))
    return fail(check_norm(norm, desc.nonfinite, "norm", 0));
  const UView<const std::uint32_t> words = u32_view(q, codes_bytes / 4);
  const std::uint32_t levels = desc.levels;
  std::uint64_t bad = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::qsparse_check", Range<>(0, k),
      KOKKOS_LAMBDA(const std::uint64_t i, std::uint64_t& m) {
        if (!code_ok(code_at(words, i, bits), norm, levels) && i < m) m = i;
      },
      Kokkos::Min<std::uint64_t>(bad));
  if (bad != kNone) return fail(describe_code(code_at(words, bad, bits), norm, levels, bad));
  const double factor = desc.scaled ? scaled_factor(k, desc.levels) : 1.0;
  std::vector<float> values(k);
  const UView<float> vv(values.data(), k);
  Kokkos::parallel_for(
      "gradcomp::kk::qsparse_decode", Range<>(0, k), KOKKOS_LAMBDA(const std::uint64_t i) {
        vv(i) = dequantize(code_at(words, i, bits), norm, levels, factor);
      });
  apply_sparse(support, UView<const float>(values.data(), k), kAccumulate, alpha, view_of(out));
  return Status::success();
}

}  // namespace

void register_qsgd_family(KkTable& table) {
  table[CompressorKind::kQsgd] =
      small_ops<qsgd_decode<false>, qsgd_decode<true>>(qsgd_payload_bytes, qsgd_compress);
  const KkOps s = small_ops<qsparse_decode<false>, qsparse_decode<true>>(qsparse_payload_bytes,
                                                                         qsparse_compress);
  table[CompressorKind::kQsgdTopK] = s;
  table[CompressorKind::kQsgdRandK] = s;
}

}  // namespace gradcomp::kk::sel
