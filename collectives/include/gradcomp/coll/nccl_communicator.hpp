// The NCCL backend of the communicator interface (include/gradcomp/communicator.hpp): buffers are
// DEVICE pointers (device_buffers() is true) and every collective is enqueued on the stream given
// at creation. Built when GRADCOMP_HAVE_NCCL and GRADCOMP_HAVE_MPI (docs/cuda.md).
//
// Ordering: a call returns once the collective is enqueued; results are ready when the stream
// reaches it, so the caller's kernels on the same stream see them in order. barrier() and
// errors are the exceptions: barrier synchronises the stream, and an asynchronous NCCL error is
// reported (kNcclError, with ncclGetErrorString) by the next call that checks the communicator.
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>

#include <memory>

#include "gradcomp/communicator.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::coll {

// Collective over `comm`: rank 0 creates the NCCL unique id and broadcasts it with MPI, then
// every rank calls ncclCommInitRank on its current CUDA device (cudaSetDevice first: one rank
// per GPU). `stream` stays owned by the caller and must outlive the communicator. Without a
// CUDA device the call fails with kCudaError on every rank (the device probe is collective,
// so no rank is left waiting in ncclCommInitRank).
Result<std::unique_ptr<Communicator>> make_nccl_communicator(MPI_Comm comm, cudaStream_t stream);

// A host-buffer view of a device-buffer communicator (NCCL): device_buffers() is false, every
// call copies its host send extent to device scratch, runs device_comm's collective on `stream`
// (the stream device_comm was created with), copies the received bytes back and synchronises.
// With it the compressed collectives (compressed.hpp) and the distributed optimizer, which
// compute on host buffers, run over NCCL unchanged (bit-identical to their MPI runs); the
// compression itself stays on the host. device_comm must outlive the returned communicator.
// kInvalidArgument if device_comm already takes host buffers.
Result<std::unique_ptr<Communicator>> make_host_staging_communicator(Communicator& device_comm,
                                                                     cudaStream_t stream);

}  // namespace gradcomp::coll
