// The communicator interface: the collectives gradcomp's compressed algorithms and distributed
// optimizer are written over, once. Backends: MPI on host buffers (collectives/mpi/, Open MPI),
// NCCL on device buffers and a CUDA stream (collectives/nccl/, issue #7).
//
// Rules every backend follows:
// - Every method is collective: all ranks of the communicator call it, in the same order, with
//   arguments that agree where documented (counts, dtype, op, root). Backends check what they can
//   cheaply and return kInvalidArgument; a disagreement they cannot see is undefined, as in MPI.
// - Counts are in elements of `dtype` for reductions and in bytes for data movement
//   (allgather, alltoall, broadcast), because compressed payloads are byte strings.
// - In-place: allreduce with send == recv; allgather with send == recv + rank * bytes.
// - Errors of the transport become a Status with the backend's code (kMpiError, kNcclError) and
//   the transport's own message, never an abort.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gradcomp/dtype.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp {

enum class ReduceOp : std::uint8_t { kSum, kMax, kMin };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual std::uint32_t rank() const = 0;
  virtual std::uint32_t size() const = 0;
  // "mpi", "nccl": names the backend in errors, logs and benchmark JSON.
  virtual const char* backend() const = 0;
  // Where buffers must live: false = host memory (MPI), true = device memory (NCCL).
  virtual bool device_buffers() const = 0;

  // recv[j] = op over ranks of send[j], j < count. send == recv is in-place.
  virtual Status allreduce(const void* send, void* recv, std::uint64_t count, DType dtype,
                           ReduceOp op) = 0;
  // recv (count elements) = block `rank` of op over ranks of send (size() * count elements).
  virtual Status reduce_scatter(const void* send, void* recv, std::uint64_t count, DType dtype,
                                ReduceOp op) = 0;
  // recv = concat over ranks r of send_r (bytes each); recv holds size() * bytes.
  virtual Status allgather(const void* send, void* recv, std::uint64_t bytes) = 0;
  // Variable sizes: rank r contributes recv_bytes[r] bytes, placed at recv + recv_offsets[r].
  // send_bytes must equal recv_bytes[rank()] (checked).
  virtual Status allgatherv(const void* send, std::uint64_t send_bytes, void* recv,
                            Span<const std::uint64_t> recv_bytes,
                            Span<const std::uint64_t> recv_offsets) = 0;
  // Block j of send (bytes each) goes to rank j; block i of recv comes from rank i.
  virtual Status alltoall(const void* send, void* recv, std::uint64_t bytes) = 0;
  // Variable sizes and offsets, one entry per rank, in bytes.
  virtual Status alltoallv(const void* send, Span<const std::uint64_t> send_bytes,
                           Span<const std::uint64_t> send_offsets, void* recv,
                           Span<const std::uint64_t> recv_bytes,
                           Span<const std::uint64_t> recv_offsets) = 0;
  virtual Status broadcast(void* buffer, std::uint64_t bytes, std::uint32_t root) = 0;
  virtual Status barrier() = 0;
};

}  // namespace gradcomp
