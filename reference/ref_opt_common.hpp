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

// sum_{i = 0..P-1} double(rows[i][j]), added in rank order (algorithms.md: means over workers).
inline double sum_rank_order(const std::vector<std::vector<float>>& rows, std::uint64_t j) {
  double sum = 0.0;
  for (const std::vector<float>& row : rows) sum += static_cast<double>(row[j]);
  return sum;
}

// out[j] = fp32(sum_rank_order(rows, j) / P) for j in [begin, end): the mean over workers,
// rounded once.
inline void mean_rank_order(const std::vector<std::vector<float>>& rows, std::uint64_t begin,
                            std::uint64_t end, std::vector<float>& out) {
  const double p = static_cast<double>(rows.size());
  for (std::uint64_t j = begin; j < end; ++j)
    out[j] = static_cast<float>(sum_rank_order(rows, j) / p);
}

// The same for all n elements, as a new vector.
inline std::vector<float> mean_rank_order(const std::vector<std::vector<float>>& rows,
                                          std::uint64_t n) {
  std::vector<float> out(n, 0.0f);
  mean_rank_order(rows, 0, n, out);
  return out;
}

// The context of a compression at `step` by `rank` (tensor_id as given; no shared scalers, no
// PowerSGD state).
inline CompressContext step_context(std::uint32_t step, std::uint32_t rank,
                                    std::uint32_t tensor_id = 0) {
  CompressContext ctx;
  ctx.step = step;
  ctx.tensor_id = tensor_id;
  ctx.rank = rank;
  return ctx;
}

}  // namespace gradcomp::ref::detail
