// terngrad: TernGrad stochastic ternarization (algorithms.md §4.4, §8 example 5).
// Per tensor segment, with the official code's rule [A-code]:
//   clip c > 0: sigma = sqrt(mean((g - mean g)^2)) (double); bound b = c * sigma;
//               sigma == 0 (constant segment): b = max|g| instead [P]
//   clip = 0:   b = max|g|
//   the bound b (rounded to f32) is both the clip limit, g <- clamp(g, -b, b), and the local
//   scaler; scaler=shared uses s = ctx.shared_scalers[segment] >= b instead.
//   out_j = s * sgn0(g_j) * [u_j * s < |g_j|],  u_j = RngStream(seed, kTernGradRounding, step,
//   tensor_id, rank).uniform_float(j), j the global element index.
// Body: packed_bytes(n, 2) bytes of 2-bit codes (0 = -1, 1 = 0, 2 = +1; 3 invalid), then one
// f32 scaler per segment. Header count = number of segments. See docs/compressors/terngrad.md.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "ref_qsgd_common.hpp"  // qsgd::wire_scale, qsgd::check_norm: shared scale rules

namespace gradcomp::ref {
namespace detail {
namespace {

constexpr std::uint32_t kCodeMinus = 0, kCodeZero = 1, kCodePlus = 2;

std::uint64_t terngrad_body_bytes(const CompressorDesc& desc, std::uint64_t segments) {
  return packed_bytes(desc.n, 2) + 4 * segments;
}

// The local scaler of one segment, which is also its clip bound (see the file comment).
float local_scaler(Span<const float> g, double clip) {
  // max|g|, exact in f32. A NaN wins so that it is not silently dropped (nonfinite=propagate).
  float max_abs = 0.0f;
  for (float x : g) {
    const float a = std::fabs(x);
    if (std::isnan(a)) return a;
    if (a > max_abs) max_abs = a;
  }
  // An Inf segment (propagate only) keeps its Inf scaler: the output is non-finite.
  if (clip == 0.0 || !std::isfinite(max_abs)) return max_abs;
  double sum = 0.0;
  for (float x : g) sum += static_cast<double>(x);
  const double mean = sum / static_cast<double>(g.size());
  double sq = 0.0;
  for (float x : g) {
    const double dev = static_cast<double>(x) - mean;
    sq += dev * dev;
  }
  const double sigma = std::sqrt(sq / static_cast<double>(g.size()));
  // sigma == 0 means a constant segment (the double mean of equal f32 values is exact); the
  // official rule would give s = 0 and drop it, the spec falls back to max|g| [P].
  if (sigma == 0.0) return max_abs;
  // c * sigma can exceed the f32 range for huge inputs; FLT_MAX is still >= every |g|.
  return static_cast<float>(std::min(clip * sigma, static_cast<double>(FLT_MAX)));
}

std::vector<float> local_scalers(const CompressorDesc& desc, Span<const float> in,
                                 const std::vector<Segment>& segs) {
  std::vector<float> out(segs.size());
  for (std::size_t t = 0; t < segs.size(); ++t) {
    out[t] = local_scaler(in.subspan(segs[t].offset, segs[t].size), desc.clip);
  }
  return out;
}

}  // namespace

std::uint64_t terngrad_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + terngrad_body_bytes(desc, tensor_segments(desc).size());
}

Status terngrad_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
  const std::vector<Segment> segs = tensor_segments(desc);
  const std::vector<float> bounds = local_scalers(desc, in, segs);
  std::vector<float> scalers = bounds;
  if (desc.scaler == TernScaler::kShared) {
    GRADCOMP_CHECK_ARG(ctx.shared_scalers.size() == segs.size(),
                       "terngrad: scaler=shared needs one shared scaler per tensor segment: got ",
                       ctx.shared_scalers.size(), ", expected ", segs.size());
    for (std::size_t t = 0; t < segs.size(); ++t) {
      const float s = ctx.shared_scalers[t];
      GRADCOMP_CHECK_ARG(std::isfinite(s), "terngrad: shared scaler[", t, "] = ", s,
                         " is not finite");
      // A shared scaler below the local one would make |g|/s > 1: not a probability.
      GRADCOMP_CHECK_ARG(s >= bounds[t], "terngrad: shared scaler[", t, "] = ", s,
                         " is below this worker's local scaler ", bounds[t],
                         " (it must be the max over workers of terngrad_local_scalers)");
      scalers[t] = s;
    }
  }
  GRADCOMP_TRY(
      new_payload(desc, ctx, segs.size(), 0, terngrad_body_bytes(desc, segs.size()), payload));
  std::uint8_t* body = body_of(payload);
  const std::uint64_t scalers_at = packed_bytes(desc.n, 2);
  // Independent (per-rank) rounding randomness, drawn by global element index.
  const RngStream rng(desc.seed, RngPurpose::kTernGradRounding, ctx.step, ctx.tensor_id, ctx.rank);
  BitWriter writer(body);
  for (std::size_t t = 0; t < segs.size(); ++t) {
    const float b = bounds[t], s = scalers[t];
    store_f32(body + scalers_at + 4 * t, qsgd::wire_scale(s));
    for (std::uint64_t j = segs[t].offset; j < segs[t].offset + segs[t].size; ++j) {
      // Clip to the f32 bound (a no-op when b = max|g|), so |g| <= b <= s: P(keep) <= 1.
      float g = in[j];
      if (g > b) g = b;
      if (g < -b) g = -b;
      const double u = static_cast<double>(rng.uniform_float(j));
      const bool keep = u * static_cast<double>(s) < std::fabs(static_cast<double>(g));
      writer.put(keep ? (g < 0.0f ? kCodeMinus : kCodePlus) : kCodeZero, 2);
    }
  }
  return Status::success();
}

Status terngrad_decompress(const CompressorDesc& desc, const CompressContext&,
                           const WireHeader& header, Span<const std::uint8_t> body,
                           Span<float> out) {
  const std::vector<Segment> segs = tensor_segments(desc);
  const std::uint64_t expected = terngrad_body_bytes(desc, segs.size());
  GRADCOMP_CHECK_PAYLOAD(header.flags == 0, "flags 0x", std::hex, int(header.flags),
                         " set, but this compressor has no dense form");
  GRADCOMP_CHECK_PAYLOAD(header.count == segs.size(), "count ", header.count, " != ", segs.size(),
                         " tensor segments");
  GRADCOMP_CHECK_PAYLOAD(body.size() == expected, "body is ", body.size(), " bytes, expected ",
                         expected);
  const std::uint64_t scalers_at = packed_bytes(desc.n, 2);
  GRADCOMP_CHECK_PAYLOAD(padding_is_zero(body.data(), 2 * desc.n, scalers_at),
                         "padding bits after code ", desc.n, " are not zero");
  BitReader reader(body.data());
  for (std::size_t t = 0; t < segs.size(); ++t) {
    const float s = load_f32(body.data() + scalers_at + 4 * t);
    GRADCOMP_TRY(qsgd::check_norm(s, desc.nonfinite, "scaler", t));
    for (std::uint64_t j = segs[t].offset; j < segs[t].offset + segs[t].size; ++j) {
      const std::uint32_t code = reader.get(2);
      GRADCOMP_CHECK_PAYLOAD(code != 3, "code[", j, "] = 3 is not a ternary code");
      GRADCOMP_CHECK_PAYLOAD(code == kCodeZero || s != 0.0f, "code[", j,
                             "] is non-zero in a segment whose scaler is 0");
      // s * {-1, 0, +1}: a non-finite scaler (propagate only) makes the whole segment NaN/Inf.
      const float t_j = code == kCodeMinus ? -1.0f : (code == kCodePlus ? 1.0f : 0.0f);
      out[j] = s * t_j;
    }
  }
  return Status::success();
}

}  // namespace detail

Status terngrad_local_scalers(const CompressorDesc& desc, Span<const float> in,
                              std::vector<float>& scalers) {
  GRADCOMP_TRY(validate(desc));
  GRADCOMP_CHECK_ARG(desc.kind == CompressorKind::kTernGrad,
                     "terngrad_local_scalers: descriptor is ", compressor_name(desc.kind),
                     ", not terngrad");
  GRADCOMP_CHECK_ARG(in.size() == desc.n, "terngrad: input has ", in.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(in.size() == 0 || in.data() != nullptr, "terngrad: null input pointer");
  if (desc.nonfinite == NonfinitePolicy::kError) {
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (!std::isfinite(in[i])) {
        return make_status(StatusCode::kNonFinite, "terngrad: input[", i, "] = ", in[i],
                           " is not finite (nonfinite=error; use nonfinite=propagate to allow)");
      }
    }
  }
  scalers = detail::local_scalers(desc, in, tensor_segments(desc));
  return Status::success();
}

}  // namespace gradcomp::ref
