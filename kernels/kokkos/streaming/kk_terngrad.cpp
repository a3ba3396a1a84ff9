// terngrad on Kokkos (docs/compressors/terngrad.md, reference/ref_terngrad.cpp).
//   pass 1, one work item per tensor segment: max|g| (as |x| bit patterns: integer max, NaN
//           above Inf) with the finiteness check, and for clip > 0 the double sum and then the
//           double sum of squared deviations, each a sequential chain in index order: that order
//           is what makes the f32 bound bit-identical to the reference's (a split sum would
//           round differently and move the clip bound and the keep decisions);
//   pass 2, 16 elements (one u32 word of 2-bit codes) per work item: clip, the Philox uniform
//           by global index, the keep test in double, packing in registers.
// Decode validates every code and scaler first (read-only), then writes out once.
#include <cfloat>
#include <cmath>

#include "../selection/kk_sel_common.hpp"
#include "kk_streaming.hpp"

namespace gradcomp::kk {
namespace {

using namespace gradcomp::kk::sel;

constexpr std::uint32_t kCodeMinus = 0, kCodeZero = 1, kCodePlus = 2;

std::uint64_t body_bytes(const CompressorDesc& desc, std::uint64_t segments) {
  return packed_bytes(desc.n, 2) + 4 * segments;
}

std::uint64_t terngrad_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + body_bytes(desc, tensor_segments(desc).size());
}

// The canonical quiet NaN for a NaN scaler (qsgd::wire_scale of the reference).
KOKKOS_INLINE_FUNCTION float wire_scale(float x) { return x != x ? bits_float(0x7FC00000u) : x; }

// Segment t covers [off(t), off(t+1)). Finds the segment of element j (binary search).
KOKKOS_INLINE_FUNCTION std::uint64_t segment_of(const UView<const std::uint64_t>& off,
                                                std::uint64_t nseg, std::uint64_t j) {
  std::uint64_t lo = 0, hi = nseg;  // off(lo) <= j < off(hi)
  while (hi - lo > 1) {
    const std::uint64_t mid = (lo + hi) / 2;
    if (off(mid) <= j) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

std::vector<std::uint64_t> offsets(const std::vector<Segment>& segs) {
  std::vector<std::uint64_t> off(segs.size() + 1, 0);
  for (std::size_t t = 0; t < segs.size(); ++t) off[t + 1] = segs[t].offset + segs[t].size;
  return off;
}

// Pass 1: bound[t] = local scaler of segment t; returns the first non-finite index or kNone.
std::uint64_t local_bounds(UView<const float> x, UView<const std::uint64_t> off, double clip,
                           UView<float> bound) {
  std::uint64_t first = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::terngrad_bounds", Range<>(0, bound.extent(0)),
      KOKKOS_LAMBDA(const std::uint64_t t, std::uint64_t& m) {
        const std::uint64_t b = off(t), e = off(t + 1);
        std::uint32_t kmax = 0;
        for (std::uint64_t i = b; i < e; ++i) {
          const std::uint32_t k = abs_key(x(i));
          kmax = k > kmax ? k : kmax;
        }
        if (key_nonfinite(kmax)) {
          for (std::uint64_t i = b; i < e; ++i)
            if (key_nonfinite(abs_key(x(i)))) {
              m = i < m ? i : m;
              break;
            }
          bound(t) = bits_float(kmax);  // Inf, or NaN (written canonically later)
          return;
        }
        const float max_abs = bits_float(kmax);
        if (clip == 0.0) {
          bound(t) = max_abs;
          return;
        }
        double sum = 0.0;
        for (std::uint64_t i = b; i < e; ++i) sum += static_cast<double>(x(i));
        const double mean = sum / static_cast<double>(e - b);
        double sq = 0.0;
        for (std::uint64_t i = b; i < e; ++i) {
          const double dev = static_cast<double>(x(i)) - mean;
          sq += dev * dev;
        }
        const double sigma = ::sqrt(sq / static_cast<double>(e - b));
        if (sigma == 0.0) {
          bound(t) = max_abs;
          return;
        }
        // std::min(c, FLT_MAX) of the reference, NaN included (n = 0: sigma is NaN).
        const double c = clip * sigma, fmax = static_cast<double>(FLT_MAX);
        bound(t) = static_cast<float>(fmax < c ? fmax : c);
      },
      Kokkos::Min<std::uint64_t>(first));
  return first;
}

Status terngrad_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const std::vector<Segment> segs = tensor_segments(desc);
  const std::uint64_t nseg = segs.size();
  const std::vector<std::uint64_t> off = offsets(segs);
  const UView<const std::uint64_t> ov(off.data(), off.size());
  const UView<const float> x = view_of(in);
  std::vector<float> bounds(nseg), scalers(nseg);
  const std::uint64_t bad = local_bounds(x, ov, desc.clip, UView<float>(bounds.data(), nseg));
  // The reference rejects any NaN/Inf before looking at the scalers.
  if (desc.nonfinite == NonfinitePolicy::kError && bad != kNone)
    return nonfinite_status(desc, in, bad);
  scalers = bounds;
  if (desc.scaler == TernScaler::kShared) {
    GRADCOMP_CHECK_ARG(ctx.shared_scalers.size() == nseg,
                       "terngrad: scaler=shared needs one shared scaler per tensor segment: got ",
                       ctx.shared_scalers.size(), ", expected ", nseg);
    for (std::size_t t = 0; t < nseg; ++t) {
      const float s = ctx.shared_scalers[t];
      GRADCOMP_CHECK_ARG(std::isfinite(s), "terngrad: shared scaler[", t, "] = ", s,
                         " is not finite");
      GRADCOMP_CHECK_ARG(s >= bounds[t], "terngrad: shared scaler[", t, "] = ", s,
                         " is below this worker's local scaler ", bounds[t],
                         " (it must be the max over workers of terngrad_local_scalers)");
      scalers[t] = s;
    }
  }
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, nseg, 0, body_bytes(desc, nseg), p));
  std::uint8_t* body = p.data() + kHeaderBytes;
  const std::uint64_t codes_bytes = packed_bytes(desc.n, 2);
  float* wire = reinterpret_cast<float*>(body + codes_bytes);
  for (std::size_t t = 0; t < nseg; ++t) wire[t] = wire_scale(scalers[t]);
  const UView<const float> bv(bounds.data(), nseg), sv(scalers.data(), nseg);
  const UView<std::uint32_t> words(reinterpret_cast<std::uint32_t*>(body), codes_bytes / 4);
  const RngStream rng(desc.seed, RngPurpose::kTernGradRounding, ctx.step, ctx.tensor_id, ctx.rank);
  const std::uint64_t n = desc.n;
  Kokkos::parallel_for(
      "gradcomp::kk::terngrad_encode", Range<>(0, codes_bytes / 4),
      KOKKOS_LAMBDA(const std::uint64_t w) {
        const std::uint64_t first = 16 * w;
        const std::uint32_t cnt = static_cast<std::uint32_t>(n - first < 16 ? n - first : 16);
        // Uniforms in their own loop: 16 independent Philox evaluations.
        float u[16];
        for (std::uint32_t e = 0; e < 16; ++e) u[e] = rng.uniform_float(first + e);
        std::uint64_t t = segment_of(ov, nseg, first);
        std::uint64_t tend = ov(t + 1);
        float b = bv(t), s = sv(t);
        std::uint32_t bits = 0;
        for (std::uint32_t e = 0; e < cnt; ++e) {
          const std::uint64_t j = first + e;
          while (j >= tend) {
            ++t;
            tend = ov(t + 1);
            b = bv(t);
            s = sv(t);
          }
          float g = x(j);
          if (g > b) g = b;
          if (g < -b) g = -b;
          const bool keep =
              static_cast<double>(u[e]) * static_cast<double>(s) < ::fabs(static_cast<double>(g));
          const std::uint32_t code = keep ? (g < 0.0f ? kCodeMinus : kCodePlus) : kCodeZero;
          bits |= code << (2 * e);
        }
        words(w) = bits;
      });
  payload.swap(p);
  return Status::success();
}

// A code word is valid if no 2-bit field is 3; with scaler 0 only zero codes (01) may appear.
KOKKOS_INLINE_FUNCTION bool has_code3(std::uint32_t w) {
  return ((w & (w >> 1)) & 0x55555555u) != 0;
}

template <bool kAccumulate>
Status terngrad_decode(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  auto fail = [&](const auto&... args) {
    return make_status(StatusCode::kCorruptPayload, "terngrad: ", args...);
  };
  const std::vector<Segment> segs = tensor_segments(desc);
  const std::uint64_t nseg = segs.size();
  if (h.flags != 0) return fail("flags set, but this compressor has no dense form");
  if (h.count != nseg) return fail("count ", h.count, " != ", nseg, " tensor segments");
  if (h.body_bytes != body_bytes(desc, nseg))
    return fail("body is ", h.body_bytes, " bytes, expected ", body_bytes(desc, nseg));
  const std::uint8_t* body = payload.data() + kHeaderBytes;
  const std::uint64_t n = desc.n;
  const std::uint64_t nwords = packed_bytes(n, 2) / 4;
  const std::uint32_t* words = reinterpret_cast<const std::uint32_t*>(body);
  if (n % 16 != 0 && (words[n / 16] >> (2 * (n % 16))) != 0)
    return fail("padding bits after code ", n, " are not zero");
  std::vector<float> scalers(nseg);
  for (std::size_t t = 0; t < nseg; ++t) {
    const float s = load_f32(body + 4 * nwords + 4 * t);
    if (std::signbit(s)) return fail("scaler[", t, "] = ", s, " is negative (sign bit set)");
    if (desc.nonfinite == NonfinitePolicy::kError && !std::isfinite(s))
      return fail("scaler[", t, "] = ", s, " is not finite");
    scalers[t] = s;
  }
  const std::vector<std::uint64_t> off = offsets(segs);
  const UView<const std::uint64_t> ov(off.data(), off.size());
  const UView<const float> sv(scalers.data(), nseg);
  // Validation pass (codes only, n/4 bytes): first word holding a 3, or a non-zero code in a
  // segment whose scaler is 0.
  std::uint64_t bad = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::terngrad_check", Range<>(0, nwords),
      KOKKOS_LAMBDA(const std::uint64_t w, std::uint64_t& m) {
        const std::uint32_t v = words[w];
        bool ok = !has_code3(v);
        const std::uint64_t t0 = segment_of(ov, nseg, 16 * w);
        if (ok && 16 * w + 16 <= ov(t0 + 1) && sv(t0) != 0.0f) {
          // The common case, decided per word: inside one segment with a non-zero scaler.
        } else if (ok && v != 0x55555555u) {  // some non-zero code: its scaler must be non-zero
          const std::uint64_t first = 16 * w;
          const std::uint32_t cnt = static_cast<std::uint32_t>(n - first < 16 ? n - first : 16);
          std::uint64_t t = segment_of(ov, nseg, first);
          for (std::uint32_t e = 0; e < cnt && ok; ++e) {
            while (first + e >= ov(t + 1)) ++t;
            ok = ((v >> (2 * e)) & 3u) == kCodeZero || sv(t) != 0.0f;
          }
        }
        if (!ok && w < m) m = w;
      },
      Kokkos::Min<std::uint64_t>(bad));
  if (bad != kNone) {
    for (std::uint64_t j = 16 * bad; j < n && j < 16 * bad + 16; ++j) {
      const std::uint32_t code = (words[bad] >> (2 * (j % 16))) & 3u;
      if (code == 3) return fail("code[", j, "] = 3 is not a ternary code");
      if (code != kCodeZero)
        return fail("code[", j, "] is non-zero in a segment whose scaler is 0");
    }
  }
  float* o = out.data();
  const double a = static_cast<double>(alpha);
  Kokkos::parallel_for(
      "gradcomp::kk::terngrad_decode", Range<>(0, nwords), KOKKOS_LAMBDA(const std::uint64_t w) {
        const std::uint64_t first = 16 * w;
        const std::uint32_t cnt = static_cast<std::uint32_t>(n - first < 16 ? n - first : 16);
        const std::uint32_t v = words[w];
        std::uint64_t t = segment_of(ov, nseg, first);
        std::uint64_t tend = ov(t + 1);
        float s = sv(t);
        if (cnt == 16 && first + 16 <= tend) {
          // Whole word in one segment: a fixed, branch-free loop. Codes are 0/1/2 (validated),
          // so t_j = code - 1 is exactly the reference's -1/0/+1 and s * t_j its value.
          for (std::uint32_t e = 0; e < 16; ++e) {
            const float d = s * static_cast<float>(static_cast<int>((v >> (2 * e)) & 3u) - 1);
            o[first + e] = kAccumulate ? static_cast<float>(static_cast<double>(o[first + e]) +
                                                            a * static_cast<double>(d))
                                       : d;
          }
          return;
        }
        for (std::uint32_t e = 0; e < cnt; ++e) {
          const std::uint64_t j = first + e;
          while (j >= tend) {
            ++t;
            tend = ov(t + 1);
            s = sv(t);
          }
          const std::uint32_t code = (v >> (2 * e)) & 3u;
          const float tj = code == kCodeMinus ? -1.0f : (code == kCodePlus ? 1.0f : 0.0f);
          const float d = s * tj;
          o[j] = kAccumulate
                     ? static_cast<float>(static_cast<double>(o[j]) + a * static_cast<double>(d))
                     : d;
        }
      });
  return Status::success();
}

Status terngrad_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const std::uint8_t> payload, Span<float> out) {
  return terngrad_decode<false>(desc, ctx, payload, 1.0f, out);
}

}  // namespace

void register_terngrad(KkTable& table) {
  KkOps o;
  o.ops.payload_bytes = terngrad_payload_bytes;
  o.ops.compress = terngrad_compress;
  o.ops.decompress = terngrad_decompress;
  o.ops.decompress_accumulate = terngrad_decode<true>;
  table[CompressorKind::kTernGrad] = o;
}

}  // namespace gradcomp::kk
