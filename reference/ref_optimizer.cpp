// Optimizer::create: resolve the preset, check the arguments once, pick the engine.
#include <cmath>

#include "ref_opt_common.hpp"

namespace gradcomp::ref {

Result<std::unique_ptr<Optimizer>> Optimizer::create(
    const PresetDesc& preset, std::uint32_t workers, Span<const float> x0,
    const std::vector<std::vector<std::uint64_t>>& shapes) {
  GRADCOMP_CHECK_ARG(workers >= 1, preset_name(preset.kind), ": need at least one worker");
  for (std::size_t i = 0; i < x0.size(); ++i) {
    if (!std::isfinite(x0[i])) {
      return make_status(StatusCode::kNonFinite, preset_name(preset.kind), ": x0[", i,
                         "] = ", x0[i], " is not finite");
    }
  }
  auto config = resolve_preset(preset, x0.size(), shapes);
  if (!config.ok()) return config.status();
  if (config->family == Family::kSynchronous) {
    return detail::make_synchronous_optimizer(config.value(), workers, x0, shapes);
  }
  return detail::make_local_optimizer(config.value(), workers, x0, shapes);
}

namespace detail {

Status check_gradients(const std::vector<std::vector<float>>& grads, std::uint32_t workers,
                       std::uint64_t n) {
  GRADCOMP_CHECK_ARG(grads.size() == workers, "got gradients of ", grads.size(),
                     " workers, expected ", workers);
  for (std::uint32_t w = 0; w < workers; ++w) {
    GRADCOMP_CHECK_ARG(grads[w].size() == n, "worker ", w, " gradient has ", grads[w].size(),
                       " elements, the model has ", n);
    for (std::uint64_t i = 0; i < n; ++i) {
      if (!std::isfinite(grads[w][i])) {
        return make_status(StatusCode::kNonFinite, "worker ", w, " gradient[", i,
                           "] = ", grads[w][i], " is not finite; no state was changed");
      }
    }
  }
  return Status::success();
}

Status compress_roundtrip(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<float>& q, std::uint64_t* bytes,
                          std::vector<std::uint8_t>* payload) {
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(compress(desc, ctx, in, p));
  std::vector<float> out(desc.n);
  GRADCOMP_TRY(decompress(desc, ctx, p, Span<float>(out)));
  if (bytes) *bytes = p.size();
  q.swap(out);
  if (payload) payload->swap(p);
  return Status::success();
}

}  // namespace detail
}  // namespace gradcomp::ref
