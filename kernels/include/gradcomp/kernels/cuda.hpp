// The native CUDA backend (kernels/cuda/, docs/cuda.md): compressors on DEVICE pointers and a
// CUDA stream, for trainers and the NCCL collectives. The registry entry "cuda:native" wraps the
// same code for host spans (copy in, run, copy out) so gradcomp-validate compares it with the
// oracle unchanged.
//
// Implemented: identity, fp16, bf16, sign, blocksign, qsgd, terngrad, topk, threshold, randk,
// dgc, grbs, rbgs, signtopk, qsgd_topk, qsgd_randk (every option of each). Not implemented:
// powersgd (implements() false; the registry says so).
//
// Synchronisation: every call enqueues on `stream` and then synchronises it once or twice to
// learn its Status (non-finite inputs, decoder checks, threshold's count, random-k's collision
// resolution on the host). Payload sizes and wire bytes are those of docs/wire-format.md.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/kernels/fused_ef.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::cuda {

// Probed once per process (cudaGetDeviceCount). Any error counts as "no device": without a
// driver the runtime reports cudaErrorInsufficientDriver (35), not cudaErrorNoDevice (100).
struct DeviceStatus {
  bool available = false;
  int count = 0;
  std::string reason;  // "no CUDA device: ..." when unavailable
  std::string name;    // device 0's name when available
};
const DeviceStatus& device_status();

// True if the CUDA backend has kernels for desc.kind (whether or not a device is present).
bool implements(const CompressorDesc& desc);

// Exact payload size (maximum for threshold), as ref::payload_bytes.
std::uint64_t payload_bytes(const CompressorDesc& desc);

// d_in: desc.n floats on the device. d_payload: `capacity` >= payload_bytes(desc) bytes on the
// device; *payload_size receives the bytes written. On error the contents of d_payload are
// unspecified (the host ops of the registry leave the caller's payload untouched).
Status compress(const CompressorDesc& desc, const CompressContext& ctx, const float* d_in,
                std::uint8_t* d_payload, std::uint64_t capacity, std::uint64_t* payload_size,
                cudaStream_t stream);

// d_payload: payload_size bytes on the device; d_out: desc.n floats on the device, written only
// if every wire-format check passes (same Status codes as the reference).
Status decompress(const CompressorDesc& desc, const CompressContext& ctx,
                  const std::uint8_t* d_payload, std::uint64_t payload_size, float* d_out,
                  cudaStream_t stream);
// d_out += alpha * D(payload), fused (no dense temporary).
Status decompress_accumulate(const CompressorDesc& desc, const CompressContext& ctx,
                             const std::uint8_t* d_payload, std::uint64_t payload_size, float alpha,
                             float* d_out, cudaStream_t stream);

// Fused error-feedback worker step on device buffers, with the semantics of
// kk::fused_ef_compress (fused_ef.hpp: S2-S6 of the reference engine, bit-identical payload and
// memories). Compressors: every one cuda:native implements (implements()). d_momentum may be
// null for momentum_form=none, d_error without error feedback. Three sweeps: p = S2-S4(g, m, e)
// into a scratch buffer (with the gradient's finiteness check), the compressor on p, then m' and
// e' = p - D(C(p)): D decoded inline from the payload for identity, fp16, bf16, sign and
// blocksign; for the others the compressor's decompress_accumulate with alpha = -1 turns the
// scratch p into e' first (same bits). On error (kNonFinite "grad[i]" or the
// compressor's own) momentum and error are untouched; the payload bytes are unspecified.
bool fused_ef_supports(const CompressorDesc& desc);
Status fused_ef_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         const kk::FusedEfParams& params, const float* d_grad, float* d_momentum,
                         float* d_error, std::uint8_t* d_payload, std::uint64_t capacity,
                         std::uint64_t* payload_size, cudaStream_t stream);

// The registry entry "cuda:native". can_implement is false without a device.
CompressorImpl registry_entry();

}  // namespace gradcomp::cuda
