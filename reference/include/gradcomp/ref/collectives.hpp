// Oracles of the compressed collectives (collectives/include/gradcomp/coll/compressed.hpp),
// simulated on host arrays: P inputs in, P outputs out, in one process, with the reference
// compressors. Written for clarity and independently of the collective algorithms: each is the
// definition of what the P ranks must compute, with the simulator's arithmetic (means sum the
// decoded f32 messages in double in rank order 0..P-1, divide by P, round to f32 once).
//
// Rank r compresses with CompressContext{ctx.step, ctx.tensor_id, rank r}. Every output is the
// same on every rank, so outputs are returned once (a vector of n floats) except where noted.
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::ref {

// mean_r in_r (f32 inputs, no compression).
Result<std::vector<float>> coll_dense_mean(const std::vector<std::vector<float>>& in);

// mean_r D(C_r(in_r)): what allgather and shared-support compute.
Result<std::vector<float>> coll_compressed_mean(const CompressorDesc& desc, std::uint32_t step,
                                                std::uint32_t tensor_id,
                                                const std::vector<std::vector<float>>& in);

// sgn0(sum_r sgn±(D(C_r(in_r)))), ties -> tie_plus ? +1 : 0.
Result<std::vector<float>> coll_majority(const CompressorDesc& desc, std::uint32_t step,
                                         std::uint32_t tensor_id,
                                         const std::vector<std::vector<float>>& in, bool tie_plus);

// Two-way compression with a chunked server (algorithms.md §6.3; include/gradcomp/chunking.hpp):
// a = mean_r D(C_up,r(in_r)); for each chunk j of chunk_bounds(n, P):
// s = f32(a + rescale * e), m = C_down,j(s) with context {step, tensor 1, rank j} and the
// owner's compressor (down with the worker blocks / tensor segments cut at the chunk), e <- s -
// D(m), out[chunk j] = D(m). server_error (n elements, chunk j = owner j's memory) is updated.
Result<std::vector<float>> coll_two_phase(const CompressorDesc& up, const CompressorDesc& down,
                                          std::uint32_t step,
                                          const std::vector<std::vector<float>>& in,
                                          std::vector<float>& server_error, double rescale);

}  // namespace gradcomp::ref
