// The reference (oracle) compressors: scalar, single-threaded, written for clarity.
// Scales and norms are accumulated in double (algorithms.md §2). Every backend must produce the
// same payload bytes where the compressor is deterministic given the counter RNG.
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::ref {

// The context and PowerSGD state are backend-independent (include/gradcomp/compress_context.hpp).
using gradcomp::CompressContext;
using gradcomp::PowerSgdState;

// Size of the payload. Exact for fixed-size compressors; for variable-size ones (dgc,
// threshold) the largest payload compress() can produce, so a caller can allocate.
std::uint64_t payload_bytes(const CompressorDesc& desc);

// Compresses `in` (desc.n elements) into `payload` (resized to the exact payload length).
// On error `payload` is left unchanged.
Status compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                std::vector<std::uint8_t>& payload);

// Checks the payload against the wire format and writes the dense reconstruction to `out`
// (desc.n elements). On error `out` is left unchanged.
Status decompress(const CompressorDesc& desc, const CompressContext& ctx,
                  Span<const std::uint8_t> payload, Span<float> out);

// TernGrad: the per-segment scalers a worker would contribute to scaler sharing.
Status terngrad_local_scalers(const CompressorDesc& desc, Span<const float> in,
                              std::vector<float>& scalers);

}  // namespace gradcomp::ref
