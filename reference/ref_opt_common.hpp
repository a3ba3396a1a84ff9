// Internals shared by the reference optimizers (ref_optimizer.cpp, ref_opt_sync.cpp,
// ref_opt_local.cpp). Not installed.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gradcomp/compressor.hpp"
#include "gradcomp/preset.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/ref/optimizer.hpp"

namespace gradcomp::ref::detail {

// The two engines behind Optimizer::create (one per family group).
// Synchronous family (Family::kSynchronous): sgdm, ef-sgd, signum-mv, signsgd-mv, dist-ef-sgdm,
// dgc, gmc, gmc+, powersgd.
Result<std::unique_ptr<Optimizer>> make_synchronous_optimizer(
    const PipelineConfig& config, std::uint32_t workers, Span<const float> x0,
    const std::vector<std::vector<std::uint64_t>>& shapes);
// Local families (kLocalSteps, kPartialAvg, kDetached): qsparse-local, pqasgd,
// sparse-param-avg, cser, cser-pl, m-cser, def-a.
Result<std::unique_ptr<Optimizer>> make_local_optimizer(
    const PipelineConfig& config, std::uint32_t workers, Span<const float> x0,
    const std::vector<std::vector<std::uint64_t>>& shapes);

// grads must hold `workers` vectors of n finite values; the message names the worker and
// element at fault (kInvalidArgument for sizes, kNonFinite for NaN/Inf).
Status check_gradients(const std::vector<std::vector<float>>& grads, std::uint32_t workers,
                       std::uint64_t n);

// The lossy round trip every EF stage needs: q = D(C(in)), with the payload size (bytes on the
// wire, header included) returned in *bytes.
Status compress_roundtrip(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<float>& q, std::uint64_t* bytes,
                          std::vector<std::uint8_t>* payload = nullptr);

}  // namespace gradcomp::ref::detail
