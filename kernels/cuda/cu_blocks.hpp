// grbs / rbgs block selection on the host (cu_blocks.cpp): same draws as the reference.
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"

namespace gradcomp::cuda::detail {

// Largest number of values (payload_bytes = header + 4 * this).
std::uint64_t block_max_values(const CompressorDesc& desc);
// Every segment is always sent whole: kFlagDense, natural order.
bool block_always_dense(const CompressorDesc& desc);
// This step's flattened indices in payload order (not necessarily increasing: rbgs wraps).
void block_indices(const CompressorDesc& desc, const CompressContext& ctx,
                   std::vector<std::uint32_t>& idx);

}  // namespace gradcomp::cuda::detail
