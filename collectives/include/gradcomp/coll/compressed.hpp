// Compressed collective algorithms (algorithms.md §6), written once over the Communicator
// interface, with the compute of a kernel implementation from the registry. Each is a mean over
// the P ranks of the communicator: out = (1/P) sum_r D(C_r(in_r)) (majority: the vote), the
// arithmetic of the reference simulator (reference/ref_opt_sync.cpp) in deterministic mode.
//
// Conventions shared by every function below:
// - Collective: every rank calls it with the same descriptor, algorithm and options, and its
//   own `ctx` (ctx.rank = this rank's index; ctx.step / ctx.tensor_id identical everywhere).
// - in and out hold desc.n elements (out may alias in: in-place). Sizes, descriptor and
//   payload headers are compared across ranks with one small allreduce before any data moves,
//   and every local failure (NaN/Inf under nonfinite=error, a compressor error, a corrupt peer
//   payload) is agreed on with a second small allreduce: a bad input on one rank returns an
//   error on every rank (the failing rank's own message there; "rank R reported <code>" with
//   the same code elsewhere), never a hang. On error `out` and the server memory are unchanged.
// - Overloads taking `payload` start from this rank's already compressed message (the
//   distributed optimizer compresses once for error feedback); the others compress `in` with
//   `impl` and ctx first.
// - stats (optional) accumulates this rank's traffic: bytes_sent = bytes this rank contributes
//   to the collectives it calls (its message once per collective, not once per peer),
//   bytes_received = bytes of the other ranks' messages it receives. Agreement allreduces are
//   control traffic and are counted in control_bytes only. Dense: sent = received = 4n.
//
// Algorithms ("name" for the override; docs/collectives.md has the cost model):
//   dense           MPI allreduce of fp32 (the baseline; the compressor is not used)
//   allgather       allgatherv of the packed messages, decode-and-sum locally in rank order
//                   (any compressor; the one for topk / dgc / private randk / threshold)
//   shared-support  allreduce of the value sub-buffer only (shared randk, grbs, rbgs: every rank
//                   selects the same support, so the message bodies are summable f32 arrays)
//   two-phase       chunked server with server error feedback (blocksign, qsgd, terngrad, sign;
//                   algorithms.md §6.3, include/gradcomp/chunking.hpp)
//   majority        exact majority vote of the decoded signs (sign / blocksign messages)
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "gradcomp/chunking.hpp"
#include "gradcomp/coll/distributed_optimizer.hpp"  // ReductionMode
#include "gradcomp/communicator.hpp"
#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::coll {

enum class Algorithm : std::uint8_t {
  kAuto,  // the break-even rule (choose_algorithm)
  kDense,
  kAllgather,
  kSharedSupport,
  kTwoPhase,
  kMajority,
};

// "auto", "dense", "allgather", "shared-support", "two-phase", "majority".
const char* algorithm_name(Algorithm a);
Result<Algorithm> parse_algorithm(std::string_view name);

// Whether `a` computes the right thing for messages of `desc` (kDense and kAllgather: any
// compressor; kSharedSupport: shared randk, grbs, rbgs, identity; kTwoPhase: blocksign, qsgd,
// terngrad, sign, identity; kMajority: sign, blocksign).
bool algorithm_supports(Algorithm a, const CompressorDesc& desc);

// What the caller wants reduced: the mean of the decoded messages, the majority vote of their
// signs, or the mean followed by server re-compression with error feedback (two-way).
enum class Reduction : std::uint8_t { kMean, kMajority, kTwoWay };

// The break-even rule (docs/collectives.md): with payload ratio r = payload_bytes / (4 n),
//   kMajority -> majority;  kTwoWay -> two-phase;
//   kMean: shared support (shared randk, grbs, rbgs)            -> shared-support
//          allgather volume (P-1) r 4n < ring allreduce 2 (P-1)/P 4n, i.e. r < 2/P -> allgather
//          otherwise (dense-ish messages, many ranks)          -> dense
// (for top-k, r = 2 density: allgather pays while density < 1/P, peers.md §2.1).
Algorithm choose_algorithm(const CompressorDesc& desc, std::uint64_t payload_bytes,
                           std::uint32_t ranks, Reduction reduction);

// Parses `name` ("auto" applies choose_algorithm) and checks algorithm_supports; the error names
// the algorithms that do apply.
Result<Algorithm> resolve_algorithm(std::string_view name, const CompressorDesc& desc,
                                    std::uint64_t payload_bytes, std::uint32_t ranks,
                                    Reduction reduction);

struct CollectiveOptions {
  // kDeterministic: every sum in rank order 0..P-1 in double, then / P, rounded to f32 once
  // (reference mean_rank_order): bitwise the simulator. kFast: MPI's reduction (dense,
  // shared-support) or f32 accumulation of alpha = 1/P decoded messages (allgather, two-phase).
  ReductionMode mode = ReductionMode::kDeterministic;
  // Majority vote at an even split: false votes 0, true votes +1 (MajorityTie of the preset).
  bool majority_tie_plus = false;
};

struct CollStats {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t control_bytes = 0;
  std::uint32_t calls = 0;
};

// ---- the algorithms ----------------------------------------------------------------------

// out = mean over ranks of in (f32). Deterministic: allgather + rank-order double sum.
Status dense_allreduce_mean(Communicator& comm, Span<const float> in, Span<float> out,
                            const CollectiveOptions& options, CollStats* stats);

// out = mean over ranks r of D(payload_r). Any compressor.
Status allgather_allreduce(Communicator& comm, const CompressorImpl& impl,
                           const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const float> in, Span<float> out, const CollectiveOptions& options,
                           CollStats* stats);
Status allgather_allreduce(Communicator& comm, const CompressorImpl& impl,
                           const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const std::uint8_t> payload, Span<float> out,
                           const CollectiveOptions& options, CollStats* stats);

// The same mean for shared-support messages: only the f32 value bodies travel (payload headers
// are checked to agree, which catches desynchronised shared RNG).
Status shared_support_allreduce(Communicator& comm, const CompressorImpl& impl,
                                const CompressorDesc& desc, const CompressContext& ctx,
                                Span<const float> in, Span<float> out,
                                const CollectiveOptions& options, CollStats* stats);
Status shared_support_allreduce(Communicator& comm, const CompressorImpl& impl,
                                const CompressorDesc& desc, const CompressContext& ctx,
                                Span<const std::uint8_t> payload, Span<float> out,
                                const CollectiveOptions& options, CollStats* stats);

// out_j = sgn0(sum_r sgn±(D(payload_r)_j)) (ties per options.majority_tie_plus). Exact.
Status majority_vote(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& desc,
                     const CompressContext& ctx, Span<const float> in, Span<float> out,
                     const CollectiveOptions& options, CollStats* stats);
Status majority_vote(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& desc,
                     const CompressContext& ctx, Span<const std::uint8_t> payload, Span<float> out,
                     const CollectiveOptions& options, CollStats* stats);

// Two-way compression with a chunked server (algorithms.md §5.3, §6.3; the reference's
// ServerTopology::kChunked): chunk j = chunk_bounds(n, P)[j] is owned by rank j.
//   worker r: message C_up(in_r) (ctx: this rank's step, tensor_id, rank)
//   owner j:  a_j = mean_r D(message_r)[chunk j]            (deterministic: rank order, double)
//             s   = f32(a_j + server_rescale * e_j)          (e_j = server_error, this rank's
//             chunk) m_j = C_down_j(s) with C_down_j = chunk_compressor(down, chunk j) and the
//             context
//                   {ctx.step, tensor_id 1, rank j}
//             e_j <- f32(s - D(m_j))
//   all:      out[chunk j] = D(m_j) for every j
// server_error holds chunk_bounds(n, P)[rank].size() elements and is updated in place (only on
// success). worker_decoded, if not empty (n elements), receives D(C_up(in_r)) of this rank, the
// worker-side message error feedback needs. Phase 1 is an alltoallv of per-owner slices of the
// worker messages (two_phase_slice below: owner j receives only chunk j's bits and the scales
// of the blocks / buckets / segments that meet chunk j); compressors without a slicer (up kinds
// other than sign, blocksign, qsgd, terngrad, identity) fall back to an allgatherv of the whole
// messages. Phase 2 allgathers the owners' chunk messages (docs/collectives.md: volumes).
Status two_phase_allreduce(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& up,
                           const CompressorDesc& down, const CompressContext& ctx,
                           Span<const float> in, Span<float> server_error, double server_rescale,
                           Span<float> out, Span<float> worker_decoded,
                           const CollectiveOptions& options, CollStats* stats);
Status two_phase_allreduce(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& up,
                           const CompressorDesc& down, const CompressContext& ctx,
                           Span<const std::uint8_t> payload, Span<float> server_error,
                           double server_rescale, Span<float> out, const CollectiveOptions& options,
                           CollStats* stats);

// The compressor an owner applies to its chunk (the reference's chunk_compressor): n = chunk
// size, block = 0, one 1-D segment per worker block (blocksign) or tensor segment (others)
// intersected with the chunk.
CompressorDesc chunk_compressor(const CompressorDesc& down, const ChunkRange& chunk);

// ---- the slice wire form of two-phase phase 1 (docs/wire-format.md "Slices") -----------------
// The part of a worker message that chunk owner j needs, as a valid version-1 payload of the
// descriptor two_phase_slice_desc(up, chunk j): the worker's header fields (kind, step,
// tensor id) with n = chunk size and count / body_bytes of the slice, then the chunk's bit
// fields (whole 32-bit words, since chunks start at multiples of 32 elements), then the scales
// (blocksign), norms (qsgd) or scalers (terngrad) of every block / bucket / segment that meets
// the chunk, a straddling one going to both owners. Its decode equals the chunk of the whole
// message's decode bit for bit (the decoders scale each field by its group's f32 value only).

// Whether up's messages can be sliced (sign, blocksign, qsgd, terngrad, identity).
bool two_phase_can_slice(const CompressorDesc& up);

// up restricted to chunk: n = chunk size, the groups (blocks / buckets / tensor segments) cut
// at the chunk as 1-D shapes (block = 0 / bucket = 0). Precondition: two_phase_can_slice(up).
CompressorDesc two_phase_slice_desc(const CompressorDesc& up, const ChunkRange& chunk);

// Appends to `out` the slice of `payload` (a whole message of up) for every chunk in order and
// sets slice_bytes[j] (0 for an empty chunk). kCorruptPayload if the payload's header or length
// does not match up (kind, n, count, body_bytes, flags), kInvalidArgument if up has no slicer or
// a chunk is not 32-aligned / out of range. `out` is unchanged on error.
Status two_phase_slice(const CompressorDesc& up, Span<const std::uint8_t> payload,
                       const std::vector<ChunkRange>& chunks, std::vector<std::uint8_t>& out,
                       std::vector<std::uint64_t>& slice_bytes);

// Dispatch for the single-phase algorithms (kDense, kAllgather, kSharedSupport, kMajority;
// kAuto resolves with Reduction::kMean, or kMajority where the vote is asked for by
// algorithm). kTwoPhase needs the server memory: call two_phase_allreduce.
Status compressed_allreduce(Communicator& comm, Algorithm algorithm, const CompressorImpl& impl,
                            const CompressorDesc& desc, const CompressContext& ctx,
                            Span<const float> in, Span<float> out, const CollectiveOptions& options,
                            CollStats* stats);

}  // namespace gradcomp::coll
