// Fused EF worker step (include/gradcomp/kernels/fused_ef.hpp, docs/kernels.md).
// identity, fp16, bf16 and sign (tiled_step), blocksign with word-aligned blocks of at most
// kBlockTile elements (tiled_blocksign): a read-only check pass (g finite, p finite and below the
// format's overflow) and then one pass over L1-sized tiles / blocks that writes m', the payload
// and e' (about 32n bytes of traffic instead of ~56n). If the check finds anything that could
// fail, nothing has been written and the three sweeps below run and report it.
// Every other compressor: three sweeps, because the state must stay untouched when C(p) fails
// and blocksign's scale needs a whole block before any e' can be written:
//   A  read g, m, e; write p (scratch) and check g is finite          (12 B read, 4 B written)
//   C  the streaming compressor on p (its own kernel: finiteness of p, payload)
//   B  read g, m, p, payload; write m' and e' = p - D(C(p)), D decoded inline from the payload
//      (no dense q buffer)                                               (12 B read, 8 B written)
// m' is recomputed in B rather than stored in A: the arithmetic is deterministic, and storing
// it would cost a 4 B write plus a 4 B read per element.
// Decode kinds in B: 0 f32, 1 f16, 2 bf16, 3 sign bits (x block scale), 4 terngrad 2-bit codes x
// segment scaler, 5 grbs/rbgs (B writes e' = p, then the selected runs get e' = f32(p - value):
// the runs are few and contiguous, so that second touch is only the sent fraction), 6 every
// other compressor (topk, dgc, threshold, randk, qsgd, the compositions, powersgd): between C
// and B the compressor's own decompress_accumulate with alpha = -1 turns the scratch p into
// e' = f32(p - D) (the registry's accumulate is f32(f64(out) + f64(alpha) f64(D)), the same
// bits), so B copies it; for the sparse ones that extra step touches only the sent entries.
#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "../blocks/kk_blocks.hpp"
#include "../kk_ops.hpp"
#include "gradcomp/dtype.hpp"
#include "gradcomp/kernels/fused_ef.hpp"
#include "gradcomp/wire_format.hpp"

namespace gradcomp::kk {
namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Range = Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::uint64_t>>;
constexpr std::uint64_t kNone = ~std::uint64_t{0};
constexpr std::uint64_t kChunk = 4096;

// Scalar parameters as captured by the kernels.
struct Step {
  double mu;
  bool inside;
  double eta;
  double rescale;
  bool ef;
};

KOKKOS_INLINE_FUNCTION float to_f32(double x) { return static_cast<float>(x); }

// S2-S4 for element j, the reference's expressions verbatim (1 - mu is hoisted: the same
// double). Form, Inside and EF are template parameters so that the loops carry no branches.
// Returns p; *m_new gets m'.
template <int Form, bool Inside, bool EF>
KOKKOS_INLINE_FUNCTION float worker_p(double mu, double one_mu, double eta, double rescale, float g,
                                      float m, float e, float* m_new) {
  float u = g;
  float mn = m;
  if constexpr (Form == 1) {  // heavy ball
    mn = to_f32(mu * m + g);
    u = mn;
  } else if constexpr (Form == 2) {  // Nesterov
    mn = to_f32(mu * m + g);
    u = to_f32(g + mu * mn);
  } else if constexpr (Form == 3) {  // EMA
    mn = to_f32(mu * m + one_mu * g);
    u = mn;
  }
  *m_new = mn;
  if constexpr (Inside) u = to_f32(eta * u);
  if constexpr (EF) {
    return to_f32(u + rescale * e);
  } else {
    (void)e;
    (void)rescale;
    return u;
  }
}

// Sweep A on [0, len): p, and a nonzero result iff some g is Inf/NaN. Restrict-qualified
// pointers and an integer OR (a bool reduction blocks GCC's vectoriser) let the loop vectorise.
template <int Form, bool Inside, bool EF>
KOKKOS_INLINE_FUNCTION std::uint32_t sweep_a(const Step& st, std::uint64_t len,
                                             const float* __restrict g, const float* __restrict m,
                                             const float* __restrict e, float* __restrict p) {
  const double mu = st.mu, one_mu = 1.0 - st.mu, eta = st.eta, rescale = st.rescale;
  std::uint32_t bad = 0;
  for (std::uint64_t j = 0; j < len; ++j) {
    float mn;
    p[j] = worker_p<Form, Inside, EF>(mu, one_mu, eta, rescale, g[j], Form != 0 ? m[j] : 0.0f,
                                      EF ? e[j] : 0.0f, &mn);
    bad |= static_cast<std::uint32_t>((float_bits(g[j]) & 0x7F800000u) == 0x7F800000u);
  }
  return bad;
}

// Sweep B's momentum half on [0, len): m' recomputed from g and m (no Inside/EF: u is unused).
template <int Form>
KOKKOS_INLINE_FUNCTION void update_m(const Step& st, std::uint64_t len, const float* __restrict g,
                                     float* __restrict m) {
  const double mu = st.mu, one_mu = 1.0 - st.mu;
  for (std::uint64_t j = 0; j < len; ++j) {
    float mn;
    (void)worker_p<Form, false, false>(mu, one_mu, 0.0, 0.0, g[j], m[j], 0.0f, &mn);
    m[j] = mn;
  }
}

// f16_bits_to_float (dtype.hpp) without branches, the same bits: its three cases computed
// and selected with masks, so that the e' loop of fp16 vectorises.
KOKKOS_INLINE_FUNCTION float f16_to_f32_select(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t ex = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  const std::uint32_t sub =
      float_bits(static_cast<float>(static_cast<std::int32_t>(mant)) * 5.9604644775390625e-8f) |
      sign;  // m * 2^-24, exact
  const std::uint32_t inf_nan = sign | 0x7f800000u | (mant << 13);
  const std::uint32_t normal = sign | ((ex + 112u) << 23) | (mant << 13);
  const std::uint32_t is_sub = 0u - static_cast<std::uint32_t>(ex == 0);
  const std::uint32_t is_top = 0u - static_cast<std::uint32_t>(ex == 31);
  return bits_float((sub & is_sub) | (inf_nan & is_top) | (normal & ~(is_sub | is_top)));
}

// e' = f32(p - q) on [0, len) for the decode kinds without bits (q from the payload body at
// element offset j0; kinds 5 and 6: q = +0, see fused_step).
template <int Kind>
KOKKOS_INLINE_FUNCTION void update_e(std::uint64_t len, const std::uint8_t* __restrict body,
                                     std::uint64_t j0, const float* __restrict p,
                                     float* __restrict e) {
  for (std::uint64_t j = 0; j < len; ++j) {
    float q;
    if constexpr (Kind == 0) {
      q = reinterpret_cast<const float*>(body)[j0 + j];
    } else if constexpr (Kind == 1) {
      q = f16_to_f32_select(reinterpret_cast<const std::uint16_t*>(body)[j0 + j]);
    } else if constexpr (Kind == 2) {
      q = bf16_bits_to_float(reinterpret_cast<const std::uint16_t*>(body)[j0 + j]);
    } else {
      (void)body;
      (void)j0;
      q = 0.0f;
    }
    e[j] = to_f32(static_cast<double>(p[j]) - static_cast<double>(q));
  }
}

// Sign bits x scale s: q = bit ? -s : s (also for 0 and NaN), e' = f32(p - q) for the 32
// elements of one whole word. The bit test is an AND with a mask table + compare: SSE2 has no
// per-lane variable shift, and with `w >> k` (or `1u << k`) GCC does not vectorise the loop.
constexpr std::uint32_t kBit[32] = {
    1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
    1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
    1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
    1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};
KOKKOS_INLINE_FUNCTION void update_e_word(std::uint32_t w, std::uint32_t sbits,
                                          const float* __restrict p, float* __restrict e) {
  for (std::uint32_t k = 0; k < 32; ++k) {
    const std::uint32_t flip = (w & kBit[k]) != 0 ? 0x80000000u : 0u;
    e[k] = to_f32(static_cast<double>(p[k]) - static_cast<double>(bits_float(sbits ^ flip)));
  }
}

// Tiled path (identity, fp16, bf16, sign): p is encoded, decoded and turned into e' while its
// tile is in L1, so g, m, e are read once from memory instead of twice plus a p round trip.
// Elements per tile: a multiple of 32 (whole sign words per tile).
constexpr std::uint64_t kTile = 2048;

// |p| bits at or above which C(p) fails (nonfinite=error) or would differ from a plain encode:
// Inf/NaN, and for fp16/bf16 the finite values that round to Inf (float_to_f16_bits:
// ax >= 0x477ff000; float_to_bf16_bits: ax >= 0x7f7f8000).
template <int Kind>
constexpr std::uint32_t kPLimit = Kind == 1 ? 0x477ff000u : (Kind == 2 ? 0x7f7f8000u : 0x7f800000u);

// The tiled path's read-only first pass on [0, len): nonzero iff some g is Inf/NaN or some p
// reaches kPLimit, i.e. iff the step could fail. Then the untiled sweeps run instead and report
// the error (or, under a nonfinite policy that allows it, encode it) exactly as before.
template <int Form, int Kind, bool Inside, bool EF>
KOKKOS_INLINE_FUNCTION std::uint32_t check_tile(const Step& st, std::uint64_t len,
                                                const float* __restrict g,
                                                const float* __restrict m,
                                                const float* __restrict e) {
  const double mu = st.mu, one_mu = 1.0 - st.mu, eta = st.eta, rescale = st.rescale;
  std::uint32_t bad = 0;
  for (std::uint64_t j = 0; j < len; ++j) {
    float mn;
    const float p = worker_p<Form, Inside, EF>(mu, one_mu, eta, rescale, g[j],
                                               Form != 0 ? m[j] : 0.0f, EF ? e[j] : 0.0f, &mn);
    bad |= static_cast<std::uint32_t>((float_bits(g[j]) & 0x7F800000u) == 0x7F800000u);
    bad |= static_cast<std::uint32_t>((float_bits(p) & 0x7FFFFFFFu) >= kPLimit<Kind>);
  }
  return bad;
}

// p into the tile buffer and m' into m, one loop (the tiled pass runs only when nothing can
// fail any more).
template <int Form, bool Inside, bool EF>
KOKKOS_INLINE_FUNCTION void tile_pm(const Step& st, std::uint64_t len, const float* __restrict g,
                                    float* __restrict m, const float* __restrict e,
                                    float* __restrict p) {
  const double mu = st.mu, one_mu = 1.0 - st.mu, eta = st.eta, rescale = st.rescale;
  for (std::uint64_t j = 0; j < len; ++j) {
    float mn;
    p[j] = worker_p<Form, Inside, EF>(mu, one_mu, eta, rescale, g[j], Form != 0 ? m[j] : 0.0f,
                                      EF ? e[j] : 0.0f, &mn);
    if constexpr (Form != 0) m[j] = mn;
  }
}

KOKKOS_INLINE_FUNCTION bool nonfinite_bits(float x) {
  return (float_bits(x) & 0x7F800000u) == 0x7F800000u;
}

std::vector<float>& p_scratch() {
  thread_local std::vector<float> buf;
  return buf;
}

// C(p) on one tile of the tiled path: the streaming compressors' encodings (kk_streaming.cpp:
// f32 copy, float_to_f16_bits, float_to_bf16_bits, sign bit = p < 0 with zero padding) of the
// elements [j0, j0 + len).
template <int Kind>
KOKKOS_INLINE_FUNCTION void encode_tile(std::uint64_t len, const float* __restrict p,
                                        std::uint8_t* __restrict body, std::uint64_t j0) {
  if constexpr (Kind == 0) {
    float* q = reinterpret_cast<float*>(body) + j0;
    for (std::uint64_t j = 0; j < len; ++j) q[j] = p[j];
  } else if constexpr (Kind == 1 || Kind == 2) {
    std::uint16_t* q = reinterpret_cast<std::uint16_t*>(body) + j0;
    for (std::uint64_t j = 0; j < len; ++j)
      q[j] = Kind == 1 ? float_to_f16_bits(p[j]) : float_to_bf16_bits(p[j]);
  } else {
    std::uint32_t* words = reinterpret_cast<std::uint32_t*>(body) + j0 / 32;
    std::uint64_t w = 0;
    for (; 32 * w + 32 <= len; ++w) {  // whole words: a fixed-length loop that vectorises
      std::uint32_t bits = 0;
      for (std::uint32_t k = 0; k < 32; ++k)
        bits |= kBit[k] & (0u - static_cast<std::uint32_t>(p[32 * w + k] < 0.0f));
      words[w] = bits;
    }
    if (32 * w < len) {  // the last word of the tensor, zero padded
      std::uint32_t bits = 0;
      for (std::uint64_t k = 0; 32 * w + k < len; ++k) bits |= p[32 * w + k] < 0.0f ? kBit[k] : 0u;
      words[w] = bits;
    }
  }
}

// The check pass of the tiled paths: true iff no g is Inf/NaN and every p is finite and below
// kPLimit, i.e. nothing can fail once a tiled pass starts writing.
template <int Form, int Kind, bool EF>
bool nothing_can_fail(const Step& st, std::uint64_t n, const float* g, const float* m,
                      const float* e) {
  const std::uint64_t nt = (n + kTile - 1) / kTile;
  std::uint32_t bad = 0;
  Kokkos::parallel_reduce(
      "gradcomp::kk::fused_ef_check", Range(0, nt),
      KOKKOS_LAMBDA(const std::uint64_t t, std::uint32_t& acc) {
        const std::uint64_t b = t * kTile, len = b + kTile < n ? kTile : n - b;
        const float* mb = Form != 0 ? m + b : nullptr;
        const float* eb = EF ? e + b : nullptr;
        acc |= st.inside ? check_tile<Form, Kind, true, EF>(st, len, g + b, mb, eb)
                         : check_tile<Form, Kind, false, EF>(st, len, g + b, mb, eb);
      },
      Kokkos::BOr<std::uint32_t>(bad));
  return bad == 0;
}

// The header that kk_streaming.cpp's new_payload writes (flags 0; count and body_bytes fit 32
// bits: checked by the callers); returns the body, whose bytes the caller writes.
std::uint8_t* start_payload(const CompressorDesc& desc, const CompressContext& ctx,
                            std::uint64_t count, std::uint64_t body_bytes,
                            std::vector<std::uint8_t>& out) {
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
  return out.data() + kHeaderBytes;
}

// The tiled step: the check pass (nothing_can_fail), then one pass over tiles (p, m'; C(p) into the
// payload; e' = f32(p - D(C(p))) decoded from the tile just written). Returns false with m, e and
// out untouched when the check pass finds an element that could fail: the caller runs the sweeps.
template <int Form, int Kind, bool EF>
bool tiled_step(const CompressorDesc& desc, const CompressContext& ctx, const Step& st,
                const float* g, float* m, float* e, std::vector<std::uint8_t>& out) {
  const std::uint64_t n = desc.n, nt = (n + kTile - 1) / kTile;
  if (!nothing_can_fail<Form, Kind, EF>(st, n, g, m, e)) return false;

  // Every body byte is written below.
  const std::uint64_t body_bytes = Kind == 0 ? 4 * n : (Kind == 3 ? packed_bytes(n, 1) : 2 * n);
  std::uint8_t* body = start_payload(desc, ctx, n, body_bytes, out);
  Kokkos::parallel_for(
      "gradcomp::kk::fused_ef_tiles", Range(0, nt), KOKKOS_LAMBDA(const std::uint64_t t) {
        const std::uint64_t b = t * kTile, len = b + kTile < n ? kTile : n - b;
        float p[kTile];
        float* mb = Form != 0 ? m + b : nullptr;
        const float* eb = EF ? e + b : nullptr;
        if (st.inside) {
          tile_pm<Form, true, EF>(st, len, g + b, mb, eb, p);
        } else {
          tile_pm<Form, false, EF>(st, len, g + b, mb, eb, p);
        }
        encode_tile<Kind>(len, p, body, b);
        if constexpr (!EF) return;
        if constexpr (Kind == 3) {  // sign: s = 1
          const std::uint32_t* words = reinterpret_cast<const std::uint32_t*>(body) + b / 32;
          const std::uint32_t one = float_bits(1.0f);
          std::uint64_t k = 0;
          for (; k + 32 <= len; k += 32) update_e_word(words[k / 32], one, p + k, e + b + k);
          for (; k < len; ++k) {
            const std::uint32_t flip = ((words[k / 32] >> (k % 32)) & 1u) << 31;
            e[b + k] =
                to_f32(static_cast<double>(p[k]) - static_cast<double>(bits_float(one ^ flip)));
          }
        } else {
          update_e<Kind>(len, body, b, p, e + b);
        }
      });
  return true;
}

// blocksign on the tiled path: one work item per block (p of the whole block in a buffer, the
// scale summed like kk_streaming.cpp's block_scales, then signs and e'), when every block fits
// the buffer and starts on a sign word, so no word is shared by two work items.
constexpr std::uint64_t kBlockTile = 8192;

template <int Form, bool EF>
bool tiled_blocksign(const CompressorDesc& desc, const CompressContext& ctx, const Step& st,
                     const float* g, float* m, float* e, std::vector<std::uint8_t>& out) {
  const std::uint64_t n = desc.n;
  const std::vector<Segment> blocks = sign_blocks(desc);
  const std::uint64_t nb = blocks.size();
  std::vector<std::uint64_t> offs(nb + 1, 0);
  for (std::uint64_t b = 0; b < nb; ++b) {
    if (blocks[b].offset != offs[b] || offs[b] % 32 != 0 || blocks[b].size > kBlockTile) {
      return false;
    }
    offs[b + 1] = blocks[b].offset + blocks[b].size;
  }
  const bool has_scale = desc.scale != SignScale::kNone, l1 = desc.scale == SignScale::kL1;
  const std::uint64_t body_bytes = packed_bytes(n, 1) + (has_scale ? 4 * nb : 0);
  if (offs[nb] != n || body_bytes > 0xFFFFFFFFull || nb > 0xFFFFFFFFull) return false;
  if (!nothing_can_fail<Form, 3, EF>(st, n, g, m, e)) return false;

  std::uint8_t* body = start_payload(desc, ctx, nb, body_bytes, out);  // count = blocks
  float* scales = reinterpret_cast<float*>(body + packed_bytes(n, 1));
  const std::uint64_t* off = offs.data();
  Kokkos::parallel_for(
      "gradcomp::kk::fused_ef_blocks", Range(0, nb), KOKKOS_LAMBDA(const std::uint64_t blk) {
        const std::uint64_t b = off[blk], len = off[blk + 1] - b;
        float p[kBlockTile];
        float* mb = Form != 0 ? m + b : nullptr;
        const float* eb = EF ? e + b : nullptr;
        if (st.inside) {
          tile_pm<Form, true, EF>(st, len, g + b, mb, eb, p);
        } else {
          tile_pm<Form, false, EF>(st, len, g + b, mb, eb, p);
        }
        encode_tile<3>(len, p, body, b);
        float s = 1.0f;
        if (has_scale) {  // a sequential double chain in index order, as block_scales
          double acc = 0.0;
          if (l1) {
            for (std::uint64_t k = 0; k < len; ++k) acc += std::fabs(static_cast<double>(p[k]));
          } else {
            for (std::uint64_t k = 0; k < len; ++k) {
              const double x = static_cast<double>(p[k]);
              acc += x * x;
            }
          }
          const double dn = static_cast<double>(len);
          s = l1 ? static_cast<float>(acc / dn)
                 : static_cast<float>(std::sqrt(acc) / std::sqrt(dn));
          if (s != s) s = bits_float(0x7FC00000u);
          scales[blk] = s;
        }
        if constexpr (!EF) return;
        const std::uint32_t* words = reinterpret_cast<const std::uint32_t*>(body) + b / 32;
        const std::uint32_t sb = float_bits(s);
        std::uint64_t k = 0;
        for (; k + 32 <= len; k += 32) update_e_word(words[k / 32], sb, p + k, e + b + k);
        for (; k < len; ++k) {
          const std::uint32_t flip = ((words[k / 32] >> (k % 32)) & 1u) << 31;
          e[b + k] = to_f32(static_cast<double>(p[k]) - static_cast<double>(bits_float(sb ^ flip)));
        }
      });
  return true;
}

// Sweeps A, C and B for one (momentum form, decode kind, EF) combination.
template <int Form, int Kind, bool EF>
Status fused_step(const CompressorDesc& desc, const CompressContext& ctx, const Step& st,
                  Span<const float> grad, const float* g, float* m, float* e, float* p,
                  std::vector<std::uint8_t>& out) {
  const std::uint64_t n = desc.n;
  if constexpr (Kind <=
                3) {  // identity, fp16, bf16, sign (not blocksign): tiled when it can't fail
    if ((Kind != 3 || desc.kind == CompressorKind::kSign) && n > 0 && 4 * n <= 0xFFFFFFFFull &&
        tiled_step<Form, Kind, EF>(desc, ctx, st, g, m, e, out)) {
      return Status::success();
    }
  }
  if constexpr (Kind == 3) {
    if (desc.kind == CompressorKind::kBlockSign && n > 0 &&
        tiled_blocksign<Form, EF>(desc, ctx, st, g, m, e, out)) {
      return Status::success();
    }
  }
  // A: p, with the gradient's finiteness check fused (first bad index).
  std::uint64_t bad = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::fused_ef_p", Range(0, (n + kChunk - 1) / kChunk),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& first) {
        const std::uint64_t b = c * kChunk, len = b + kChunk < n ? kChunk : n - b;
        const float* mb = Form != 0 ? m + b : nullptr;
        const float* eb = EF ? e + b : nullptr;
        const std::uint32_t any = st.inside
                                      ? sweep_a<Form, true, EF>(st, len, g + b, mb, eb, p + b)
                                      : sweep_a<Form, false, EF>(st, len, g + b, mb, eb, p + b);
        if (!any) return;
        for (std::uint64_t j = b; j < b + len; ++j) {
          if (nonfinite_bits(g[j])) {
            if (j < first) first = j;
            return;
          }
        }
      },
      Kokkos::Min<std::uint64_t>(bad));
  if (bad != kNone) {
    return make_status(StatusCode::kNonFinite, "fused_ef: grad[", bad, "] = ", grad[bad],
                       " is not finite");
  }

  // C: the compressor on p (payload untouched on error).
  const CompressorOps& ops = table().at(desc.kind).ops;
  GRADCOMP_TRY(ops.compress(desc, ctx, Span<const float>(p, n), out));
  if constexpr (Kind == 6 && EF) {
    // p -= D(C(p)) in the scratch buffer: a decode error still leaves m and e untouched.
    GRADCOMP_TRY(ops.decompress_accumulate(desc, ctx, Span<const std::uint8_t>(out), -1.0f,
                                           Span<float>(p, n)));
  }

  // B: m' and e' = f32(p - D_j), D_j decoded inline from the payload body.
  const std::uint8_t* body = out.data() + kHeaderBytes;
  const auto* words = reinterpret_cast<const std::uint32_t*>(body);
  std::vector<std::uint64_t> offs(1, 0);
  const float* scales = nullptr;
  if (desc.kind == CompressorKind::kBlockSign) {
    for (const Segment& seg : sign_blocks(desc)) offs.push_back(seg.offset + seg.size);
    if (desc.scale != SignScale::kNone) {
      scales = reinterpret_cast<const float*>(body + packed_bytes(n, 1));
    }
  } else if (Kind == 4) {  // terngrad: one scaler per tensor segment, after the codes
    for (const Segment& seg : tensor_segments(desc)) offs.push_back(seg.offset + seg.size);
    scales = reinterpret_cast<const float*>(body + packed_bytes(n, 2));
  } else {
    for (std::uint64_t i = 0; i < n;) {
      i = i + 65536 < n ? i + 65536 : n;
      offs.push_back(i);
    }
  }
  const std::uint64_t* off = offs.data();
  Kokkos::parallel_for(
      "gradcomp::kk::fused_ef_update", Range(0, offs.size() - 1),
      KOKKOS_LAMBDA(const std::uint64_t blk) {
        const std::uint64_t j0 = off[blk], j1 = off[blk + 1];
        if constexpr (Form != 0) update_m<Form>(st, j1 - j0, g + j0, m + j0);
        if constexpr (!EF) return;
        if constexpr (Kind == 3) {  // sign, blocksign: bit set -> -s; whole words vectorised
          const std::uint32_t sb = float_bits(scales ? scales[blk] : 1.0f);
          auto one = [&](std::uint64_t j) {
            const std::uint32_t flip = ((words[j / 32] >> (j % 32)) & 1u) << 31;
            e[j] = to_f32(static_cast<double>(p[j]) - static_cast<double>(bits_float(sb ^ flip)));
          };
          std::uint64_t j = j0;
          for (; j < j1 && j % 32 != 0; ++j) one(j);
          for (; j + 32 <= j1; j += 32) update_e_word(words[j / 32], sb, p + j, e + j);
          for (; j < j1; ++j) one(j);
        } else if constexpr (Kind == 4) {  // terngrad: s * {-1, 0, +1} as the decoder
          const float s = scales[blk];
          for (std::uint64_t j = j0; j < j1; ++j) {
            const std::uint32_t code = (words[j / 16] >> (2 * (j % 16))) & 3u;
            const float q = s * (code == 0 ? -1.0f : (code == 2 ? 1.0f : 0.0f));
            e[j] = to_f32(static_cast<double>(p[j]) - static_cast<double>(q));
          }
        } else {  // grbs/rbgs: D = +0 outside the runs (fixed up below); kind 6: p is e'
          update_e<Kind>(j1 - j0, body, j0, p + j0, e + j0);
        }
      });
  if constexpr (Kind == 5 && EF) {
    const std::vector<blocks::Run> runs = blocks::block_runs(desc, ctx);
    const blocks::Run* rv = runs.data();
    const float* vals = reinterpret_cast<const float*>(body);
    Kokkos::parallel_for(
        "gradcomp::kk::fused_ef_runs", Range(0, runs.size()), KOKKOS_LAMBDA(const std::uint64_t r) {
          const blocks::Run run = rv[r];
          for (std::uint64_t i = 0; i < run.len; ++i)
            e[run.at + i] =
                to_f32(static_cast<double>(p[run.at + i]) - static_cast<double>(vals[run.pos + i]));
        });
  }
  return Status::success();
}

}  // namespace

bool fused_ef_supports(const CompressorDesc& desc) { return can_implement(desc); }

Status fused_ef_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         const FusedEfParams& params, Span<const float> grad, Span<float> momentum,
                         Span<float> error, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(validate(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(fused_ef_supports(desc), "fused_ef: compressor ", name,
                     " has no fused kernel");
  const std::uint64_t n = desc.n;
  const bool has_m = params.momentum_form != MomentumForm::kNone;
  GRADCOMP_CHECK_ARG(grad.size() == n, "fused_ef: grad has ", grad.size(), " elements, n = ", n);
  GRADCOMP_CHECK_ARG(!has_m || momentum.size() == n, "fused_ef: momentum has ", momentum.size(),
                     " elements, n = ", n);
  GRADCOMP_CHECK_ARG(!params.error_feedback || error.size() == n, "fused_ef: error has ",
                     error.size(), " elements, n = ", n);
  GRADCOMP_CHECK_ARG(params.lr > 0.0, "fused_ef: lr must be > 0");

  Step st;
  st.mu = params.momentum;
  st.inside = params.lr_placement == LrPlacement::kInside;
  st.eta = params.lr;
  st.rescale = params.lr_placement == LrPlacement::kOutsideRescale && params.has_lr_prev
                   ? params.lr_prev / params.lr
                   : 1.0;
  st.ef = params.error_feedback;

  std::vector<float>& pbuf = p_scratch();
  pbuf.resize(n);
  float* p = pbuf.data();
  const float* g = grad.data();
  float* m = has_m ? momentum.data() : nullptr;
  float* e = st.ef ? error.data() : nullptr;

  // Per-thread payload buffer, swapped with the caller's on success: with the compressor's own
  // scratch (which it swaps with `out`) every buffer stays warm across steps.
  thread_local std::vector<std::uint8_t> out_buf;
  std::vector<std::uint8_t>& out = out_buf;
  const int form = static_cast<int>(params.momentum_form);
  int kind = 6;
  switch (desc.kind) {
    case CompressorKind::kIdentity: kind = 0; break;
    case CompressorKind::kFp16: kind = 1; break;
    case CompressorKind::kBf16: kind = 2; break;
    case CompressorKind::kSign:
    case CompressorKind::kBlockSign: kind = 3; break;
    case CompressorKind::kTernGrad: kind = 4; break;
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs: kind = 5; break;
    default: break;
  }
  // Compile-time momentum form, decode kind and EF flag: 4 x 7 x 2 instantiations.
  Status s = Status::success();
  auto go = [&](auto form_c, auto kind_c, auto ef_c) {
    s = fused_step<decltype(form_c)::value, decltype(kind_c)::value, decltype(ef_c)::value>(
        desc, ctx, st, grad, g, m, e, p, out);
  };
  auto by_ef = [&](auto form_c, auto kind_c) {
    if (st.ef) {
      go(form_c, kind_c, std::true_type{});
    } else {
      go(form_c, kind_c, std::false_type{});
    }
  };
  auto by_kind = [&](auto form_c) {
    switch (kind) {
      case 0: by_ef(form_c, std::integral_constant<int, 0>{}); break;
      case 1: by_ef(form_c, std::integral_constant<int, 1>{}); break;
      case 2: by_ef(form_c, std::integral_constant<int, 2>{}); break;
      case 4: by_ef(form_c, std::integral_constant<int, 4>{}); break;
      case 5: by_ef(form_c, std::integral_constant<int, 5>{}); break;
      case 6: by_ef(form_c, std::integral_constant<int, 6>{}); break;
      default: by_ef(form_c, std::integral_constant<int, 3>{}); break;
    }
  };
  switch (form) {
    case 1: by_kind(std::integral_constant<int, 1>{}); break;
    case 2: by_kind(std::integral_constant<int, 2>{}); break;
    case 3: by_kind(std::integral_constant<int, 3>{}); break;
    default: by_kind(std::integral_constant<int, 0>{}); break;
  }
  GRADCOMP_TRY(s);
  payload.swap(out);
  return Status::success();
}

}  // namespace gradcomp::kk
