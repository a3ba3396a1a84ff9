// Host-side plans shared by the Kokkos and CUDA kernels: the few scalar draws and size rules
// that decide *what* a kernel touches (DGC's sampling plan, the grbs / rbgs block draws), written
// once here. They restate the reference's rules (reference/ref_dgc.cpp, ref_grbs.cpp,
// ref_rbgs.cpp) rather than calling them, so that the oracle stays independent of the kernels
// it checks.
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"

namespace gradcomp::kernels::host {

// DGC's sampled-threshold plan (selection=code): k to send, and the strided sample the
// threshold is estimated on (stride, n_samp samples, the k_samp largest of them). stride = 1
// and n_samp = n when the tensor is too small to sample.
struct DgcPlan {
  std::uint64_t k = 0, stride = 1, n_samp = 0, k_samp = 0;
};
DgcPlan dgc_plan(const CompressorDesc& desc);

// A contiguous run of selected values: input elements [at, at + len) are body values
// [pos, pos + len). grbs sends one run per selected block row, rbgs one or two per segment
// (the wrapped part), so a selection is a short list of runs instead of an index list.
struct Run {
  std::uint64_t at = 0;
  std::uint64_t pos = 0;
  std::uint64_t len = 0;
};

// grbs / rbgs: the largest number of values a payload carries (payload_bytes = header + 4 *
// this), and whether every segment is always sent whole (kFlagDense, natural order).
std::uint64_t block_max_values(const CompressorDesc& desc);
bool block_always_dense(const CompressorDesc& desc);

// This step's selection of grbs or rbgs (desc.kind) as runs in payload order; `count` = the
// number of values (the sum of the lengths). Always-dense descriptors give the natural order.
std::vector<Run> block_runs(const CompressorDesc& desc, const CompressContext& ctx,
                            std::uint64_t& count);

}  // namespace gradcomp::kernels::host
