// The unfused oracle of kk::fused_ef_compress (fused_ef.hpp): the scalar arithmetic of
// reference/ref_opt_sync.cpp's worker stage (S2-S4) + ref::compress / ref::decompress (S5) +
// e = f32(p - q) (S6), written like worker_input and compress_and_aggregate. Shared by the
// bitwise tests (validation/unit_kk/test_kk_fused.cpp) and gradcomp-bench's fused_ef op, so the
// benchmark validates and times against the same composition the tests trust. Header-only: it
// needs only the reference library, which gradcomp_kernels links.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "gradcomp/kernels/fused_ef.hpp"
#include "gradcomp/ref/compress.hpp"

namespace gradcomp::kk {

// Same contract as fused_ef_compress, on host vectors: m and e are n values (m is read only
// for a momentum form, e only with error feedback); on success they hold m_{t+1}, e_{t+1}.
inline Status fused_ef_reference_step(const CompressorDesc& d, const CompressContext& ctx,
                                      const FusedEfParams& pa, const std::vector<float>& g,
                                      std::vector<float>& m, std::vector<float>& e,
                                      std::vector<std::uint8_t>& payload) {
  const auto f32 = [](double x) { return static_cast<float>(x); };
  const std::uint64_t n = d.n;
  for (std::uint64_t j = 0; j < n; ++j) {
    if (!std::isfinite(g[j])) return make_status(StatusCode::kNonFinite, "grad");
  }
  const double mu = pa.momentum, eta = pa.lr;
  const double rescale =
      pa.lr_placement == LrPlacement::kOutsideRescale && pa.has_lr_prev ? pa.lr_prev / eta : 1.0;
  std::vector<float> mm = m, u(n), p(n);
  for (std::uint64_t j = 0; j < n; ++j) {
    switch (pa.momentum_form) {
      case MomentumForm::kHeavyBall:
        mm[j] = f32(mu * mm[j] + g[j]);
        u[j] = mm[j];
        break;
      case MomentumForm::kNesterov:
        mm[j] = f32(mu * mm[j] + g[j]);
        u[j] = f32(g[j] + mu * mm[j]);
        break;
      case MomentumForm::kEma:
        mm[j] = f32(mu * mm[j] + (1.0 - mu) * g[j]);
        u[j] = mm[j];
        break;
      case MomentumForm::kNone: u[j] = g[j]; break;
    }
  }
  if (pa.lr_placement == LrPlacement::kInside) {
    for (float& v : u) v = f32(eta * v);
  }
  for (std::uint64_t j = 0; j < n; ++j) {
    p[j] = pa.error_feedback ? f32(u[j] + rescale * e[j]) : u[j];
  }
  std::vector<std::uint8_t> out;
  GRADCOMP_TRY(ref::compress(d, ctx, p, out));
  std::vector<float> q(n);
  GRADCOMP_TRY(ref::decompress(d, ctx, out, Span<float>(q)));
  if (pa.error_feedback) {
    for (std::uint64_t j = 0; j < n; ++j) e[j] = f32(p[j] - static_cast<double>(q[j]));
  }
  m = mm;
  payload.swap(out);
  return Status::success();
}

}  // namespace gradcomp::kk
