// Fused error-feedback worker step (Kokkos backend): stages S2-S6 of the reference synchronous
// engine (reference/ref_opt_sync.cpp, worker_input + compress_and_aggregate) for one worker and
// one tensor, with the same arithmetic in the same order, so the payload and the updated
// memories are bit-identical to the reference composition:
//   S2  m' = f32(mu m + g) (heavy-ball; u = m'), Nesterov u = f32(g + mu m'),
//       EMA m' = f32(mu m + (1 - mu) g) (u = m'), none u = g
//   S3  lr inside: u = f32(eta u); outside_rescale: r = eta_{t-1} / eta_t (1 on the first step)
//   S4  p = f32(u + r e)                        (error_feedback; else p = u)
//   S5  payload = C(p)
//   S6  e' = f32(p - D(C(p)))                   (error_feedback)
// Clipping (S1), global momentum and momentum masking are not part of this step.
// Compressors: every one kk:serial implements (every option; terngrad scaler=shared reads
// ctx.shared_scalers, which must bound the local scalers of p). identity, fp16, bf16, sign,
// blocksign, terngrad, grbs and rbgs decode D inline while writing e'; the others (topk, dgc,
// threshold, randk, qsgd, signtopk, qsgd_topk, qsgd_randk, powersgd) apply their own
// decompress_accumulate (alpha = -1) to the p scratch first: same bits, one more pass for the
// dense ones, only the sent entries for the sparse ones.
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/preset.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::kk {

struct FusedEfParams {
  MomentumForm momentum_form = MomentumForm::kNone;
  double momentum = 0.0;  // mu
  LrPlacement lr_placement = LrPlacement::kOutside;
  double lr = 1.0;           // eta_t
  double lr_prev = 0.0;      // eta_{t-1} (outside_rescale)
  bool has_lr_prev = false;  // false on the first step: rescale factor 1
  bool error_feedback = true;
};

// True if fused_ef_compress implements desc.kind.
bool fused_ef_supports(const CompressorDesc& desc);

// One worker step. momentum: n values (may be empty for momentum_form=none); error: n values
// (may be empty without error feedback). On success momentum and error hold m_{t+1}, e_{t+1}
// and payload the compressed p. Errors (same codes as the reference): kInvalidArgument for sizes
// or an unsupported compressor, kNonFinite for a NaN/Inf gradient ("grad[i]") or a p the
// compressor rejects ("input[i]", nonfinite=error); then momentum, error and payload are
// untouched.
Status fused_ef_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         const FusedEfParams& params, Span<const float> grad, Span<float> momentum,
                         Span<float> error, std::vector<std::uint8_t>& payload);

}  // namespace gradcomp::kk
