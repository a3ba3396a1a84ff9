// Fused EF worker step (include/gradcomp/kernels/fused_ef.hpp, docs/kernels.md).
// Three sweeps, because the state must stay untouched when C(p) fails and blocksign's scale
// needs a whole block before any e' can be written:
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

// S2-S4 for element j, the reference's expressions verbatim; Form and EF are template
// parameters so that the per-element loops carry no branches and vectorise. Returns p; *m_new
// gets m'.
template <int Form, bool EF>
KOKKOS_INLINE_FUNCTION float worker_p(const Step& st, float g, float m, float e, float* m_new) {
  float u = g;
  float mn = m;
  if constexpr (Form == 1) {  // heavy ball
    mn = to_f32(st.mu * m + g);
    u = mn;
  } else if constexpr (Form == 2) {  // Nesterov
    mn = to_f32(st.mu * m + g);
    u = to_f32(g + st.mu * mn);
  } else if constexpr (Form == 3) {  // EMA
    mn = to_f32(st.mu * m + (1.0 - st.mu) * g);
    u = mn;
  }
  *m_new = mn;
  if (st.inside) u = to_f32(st.eta * u);
  if constexpr (EF) {
    return to_f32(u + st.rescale * e);
  } else {
    (void)e;
    return u;
  }
}

KOKKOS_INLINE_FUNCTION bool nonfinite_bits(float x) {
  return (float_bits(x) & 0x7F800000u) == 0x7F800000u;
}

std::vector<float>& p_scratch() {
  thread_local std::vector<float> buf;
  return buf;
}

// Sweeps A, C and B for one (momentum form, decode kind, EF) combination.
template <int Form, int Kind, bool EF>
Status fused_step(const CompressorDesc& desc, const CompressContext& ctx, const Step& st,
                  Span<const float> grad, const float* g, float* m, float* e, float* p,
                  std::vector<std::uint8_t>& out) {
  const std::uint64_t n = desc.n;
  // A: p, with the gradient's finiteness check fused (first bad index).
  std::uint64_t bad = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::fused_ef_p", Range(0, (n + kChunk - 1) / kChunk),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& first) {
        const std::uint64_t b = c * kChunk, end = b + kChunk < n ? b + kChunk : n;
        bool any = false;
        for (std::uint64_t j = b; j < end; ++j) {
          float mn;
          p[j] = worker_p<Form, EF>(st, g[j], Form != 0 ? m[j] : 0.0f, EF ? e[j] : 0.0f, &mn);
          any |= nonfinite_bits(g[j]);
        }
        if (!any) return;
        for (std::uint64_t j = b; j < end; ++j) {
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
        const float s = scales ? scales[blk] : 1.0f;
        for (std::uint64_t j = off[blk]; j < off[blk + 1]; ++j) {
          if constexpr (Form != 0) {
            float mn;
            (void)worker_p<Form, false>(st, g[j], m[j], 0.0f, &mn);
            m[j] = mn;
          }
          if constexpr (!EF) continue;
          float q;
          if constexpr (Kind == 0) {
            q = reinterpret_cast<const float*>(body)[j];
          } else if constexpr (Kind == 1) {
            q = f16_bits_to_float(reinterpret_cast<const std::uint16_t*>(body)[j]);
          } else if constexpr (Kind == 2) {
            q = bf16_bits_to_float(reinterpret_cast<const std::uint16_t*>(body)[j]);
          } else if constexpr (Kind == 3) {  // sign, blocksign: bit set -> -s (also 0 and NaN)
            q = bits_float(float_bits(s) ^ (((words[j / 32] >> (j % 32)) & 1u) << 31));
          } else if constexpr (Kind == 4) {  // terngrad: s * {-1, 0, +1} as the decoder
            const std::uint32_t code = (words[j / 16] >> (2 * (j % 16))) & 3u;
            q = s * (code == 0 ? -1.0f : (code == 2 ? 1.0f : 0.0f));
          } else {  // grbs/rbgs: D = +0 outside the runs (fixed up below); kind 6: p is e'
            q = 0.0f;
          }
          e[j] = to_f32(static_cast<double>(p[j]) - static_cast<double>(q));
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
