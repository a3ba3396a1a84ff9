// DistributedOptimizer::create: resolve the preset, check what the reference checks, check that
// the chosen compute implementation runs every compressor of the preset, and check that every
// rank agrees on preset, size, layout, x0 and options, all collectively (an error on one rank is
// an error on every rank, never a hang).
#include <cmath>
#include <cstring>

#include "dist_common.hpp"

namespace gradcomp::coll {
namespace {

using detail::Setup;

// The reference's argument checks (ref_optimizer.cpp, ref_opt_sync.cpp, ref_opt_local.cpp) and
// the distributed engine's own limits, on one rank.
Status check_config(const PipelineConfig& c, Span<const float> x0,
                    const std::vector<std::vector<std::uint64_t>>& shapes,
                    const DistributedOptions& options, std::uint32_t ranks) {
  const char* name = preset_name(c.preset);
  for (std::size_t i = 0; i < x0.size(); ++i) {
    if (!std::isfinite(x0[i]))
      return make_status(StatusCode::kNonFinite, name, ": x0[", i, "] = ", x0[i], " is not finite");
  }
  GRADCOMP_CHECK_ARG(c.period >= 1, name, ": period must be >= 1");
  const detail::Compute compute(options.compute);
  auto check_slot = [&](const CompressorDesc& d) -> Status {
    Status s = compute.check(d);
    if (!s.ok())
      return make_status(s.code(), name, ": compute '", options.compute, "': ", s.message());
    return Status::success();
  };
  if (c.family == Family::kSynchronous) {
    GRADCOMP_CHECK_ARG(c.up.n == x0.size() && (!c.two_way || c.down.n == x0.size()), name,
                       ": compressors are built for n = ", c.up.n, ", the model has ", x0.size(),
                       " elements");
    GRADCOMP_CHECK_ARG(c.up.shapes == shapes || c.up.kind == CompressorKind::kIdentity, name,
                       ": the compressor's tensor layout differs from the model's");
    GRADCOMP_CHECK_ARG(
        c.aggregation != Aggregation::kPowerSgd || c.up.kind == CompressorKind::kPowerSgd, name,
        ": PowerSGD aggregation needs the powersgd compressor");
    GRADCOMP_CHECK_ARG(c.detach == 0.0 || c.error_feedback, name,
                       ": detached gradient points need error feedback");
    GRADCOMP_CHECK_ARG(c.momentum >= 0.0 && c.momentum < 1.0, name,
                       ": momentum must be in [0, 1), got ", c.momentum);
    if (c.up.kind == CompressorKind::kPowerSgd && c.aggregation != Aggregation::kPowerSgd) {
      // Its warm-start Q lives on the sending worker; the receivers cannot decode without it.
      return make_status(StatusCode::kUnimplemented, name,
                         ": powersgd as a per-worker compressor is not distributed (use the "
                         "powersgd preset's aggregation)");
    }
    if (c.aggregation != Aggregation::kPowerSgd) {
      GRADCOMP_TRY(check_slot(c.up));
      for (double density : c.warmup) {
        CompressorDesc d = c.up;
        d.density = density;
        d.k = -1;
        GRADCOMP_TRY(check_slot(d));
      }
    }
    if (c.two_way) GRADCOMP_TRY(check_slot(c.down));
    if (c.two_way && c.server == ServerTopology::kChunked) {
      // two_phase_allreduce runs worker and server compressors with one implementation.
      auto impl = select_impl(c.up, options.compute);
      if (!impl.ok() || !impl.value()->can_implement(c.down))
        return make_status(StatusCode::kUnimplemented, name, ": compute '", options.compute,
                           "' has no single implementation of both the worker and the server "
                           "compressor");
    }
  } else if (c.family == Family::kPartialAvg) {
    for (const CompressorDesc* slot : {&c.c1, &c.c2}) {
      if (slot->kind == CompressorKind::kIdentity && slot->n == 0) continue;
      GRADCOMP_CHECK_ARG(slot->kind == CompressorKind::kGrbs || slot->kind == CompressorKind::kRbgs,
                         name,
                         ": partial averaging needs a shared block sparsifier (grbs or "
                         "rbgs), got ",
                         compressor_name(slot->kind));
      GRADCOMP_CHECK_ARG(slot->n == x0.size(), name, ": block sparsifier has n = ", slot->n,
                         ", the model ", x0.size());
      GRADCOMP_TRY(check_slot(*slot));
    }
  } else {
    GRADCOMP_CHECK_ARG(c.up.n == x0.size(), name, ": compressor has n = ", c.up.n, ", the model ",
                       x0.size());
    GRADCOMP_TRY(check_slot(c.up));
  }
  // Last: an override that does not apply is refused only for a configuration that is valid.
  return detail::check_algorithm(c, options.algorithm, ranks);
}

std::uint64_t config_hash(const PresetDesc& preset, Span<const float> x0,
                          const std::vector<std::vector<std::uint64_t>>& shapes,
                          const DistributedOptions& options) {
  using detail::fnv1a64_bytes;
  const std::string text = preset.to_string() + "|" + options.compute + "|" + options.algorithm;
  std::uint64_t h = fnv1a64_bytes(text.data(), text.size());
  const std::uint8_t mode = static_cast<std::uint8_t>(options.mode);
  h = fnv1a64_bytes(&mode, 1, h);
  const std::uint64_t n = x0.size();
  h = fnv1a64_bytes(&n, sizeof n, h);
  for (const auto& shape : shapes) {
    const std::uint64_t rank = shape.size();
    h = fnv1a64_bytes(&rank, sizeof rank, h);
    h = fnv1a64_bytes(shape.data(), shape.size() * sizeof(std::uint64_t), h);
  }
  return fnv1a64_bytes(x0.data(), x0.size() * sizeof(float), h);
}

}  // namespace

Result<std::unique_ptr<DistributedOptimizer>> DistributedOptimizer::create(
    const PresetDesc& preset, Communicator& comm, Span<const float> x0,
    const std::vector<std::vector<std::uint64_t>>& shapes, const DistributedOptions& options) {
  GRADCOMP_CHECK_ARG(!comm.device_buffers(), preset_name(preset.kind), ": the ", comm.backend(),
                     " communicator wants device buffers; the distributed optimizer runs on host "
                     "buffers");
  detail::RankComm rc(comm, options.mode);
  Setup setup;
  setup.options = options;
  setup.n = x0.size();
  Status local;
  auto config = resolve_preset(preset, x0.size(), shapes);
  if (!config.ok()) {
    local = config.status();
  } else {
    setup.config = config.value();
    local = check_config(setup.config, x0, shapes, options, comm.size());
  }
  GRADCOMP_TRY(rc.agree(local, std::string(preset_name(preset.kind)) + " create"));

  // Every rank must run the same optimizer on the same model: compare a hash of everything
  // (max == min over ranks), with a fixed-size allreduce that cannot hang on a size mismatch.
  setup.hash = config_hash(preset, x0, shapes, options);
  std::uint32_t words[4] = {static_cast<std::uint32_t>(setup.hash),
                            static_cast<std::uint32_t>(setup.hash >> 32), 0, 0};
  words[2] = ~words[0];
  words[3] = ~words[1];
  GRADCOMP_TRY(comm.allreduce(words, words, 4, DType::kU32, ReduceOp::kMax));
  const bool same = words[0] == static_cast<std::uint32_t>(setup.hash) &&
                    words[1] == static_cast<std::uint32_t>(setup.hash >> 32) &&
                    words[2] == ~static_cast<std::uint32_t>(setup.hash) &&
                    words[3] == ~static_cast<std::uint32_t>(setup.hash >> 32);
  // max(h) == h and max(~h) == ~h on every rank means min(h) == max(h): all equal. Agree on the
  // outcome too, so every rank returns the same error.
  Status mismatch;
  if (!same) {
    mismatch = make_status(StatusCode::kInvalidArgument, preset_name(preset.kind),
                           ": ranks disagree on the preset, model size (rank ", comm.rank(),
                           " has n = ", x0.size(), "), tensor layout, x0 or options");
  }
  GRADCOMP_TRY(rc.agree(mismatch, std::string(preset_name(preset.kind)) + " create"));

  std::unique_ptr<DistributedOptimizer> opt = setup.config.family == Family::kSynchronous
                                                  ? detail::make_sync_engine(setup, comm, x0)
                                                  : detail::make_local_engine(setup, comm, x0);
  if (!opt) return make_status(StatusCode::kInternal, "no engine for this family");
  return opt;
}

}  // namespace gradcomp::coll
