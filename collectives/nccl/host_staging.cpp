// Host staging over a device-buffer communicator (nccl_communicator.hpp): the host-buffer
// interface that the compressed collectives and the distributed optimizer are written over,
// carried by NCCL. Each call copies its send extent to device scratch, runs the inner collective
// on the stream, copies the receive extent back and synchronises the stream, so it returns with
// the result in host memory like the MPI backend.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>

#include "gradcomp/coll/nccl_communicator.hpp"

namespace gradcomp::coll {
namespace {

Status cuda_status(cudaError_t e, const char* what) {
  return make_status(StatusCode::kCudaError, "host staging ", what, ": ", cudaGetErrorName(e), " (",
                     cudaGetErrorString(e), ")");
}
#define GC_STAGE_CUDA(expr, what)                              \
  do {                                                         \
    const cudaError_t gc_e_ = (expr);                          \
    if (gc_e_ != cudaSuccess) return cuda_status(gc_e_, what); \
  } while (0)

// Grow-only device scratch.
class DeviceScratch {
 public:
  ~DeviceScratch() {
    if (ptr_) (void)cudaFree(ptr_);
  }
  Status reserve(std::uint64_t bytes) {
    if (bytes <= capacity_) return Status::success();
    if (ptr_) GC_STAGE_CUDA(cudaFree(ptr_), "cudaFree");
    ptr_ = nullptr;
    capacity_ = 0;
    GC_STAGE_CUDA(cudaMalloc(&ptr_, std::max<std::uint64_t>(bytes, 1)), "cudaMalloc");
    capacity_ = bytes;
    return Status::success();
  }
  char* get() const { return static_cast<char*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  std::uint64_t capacity_ = 0;
};

// The bytes [0, extent) that a variable-size exchange touches.
std::uint64_t extent(Span<const std::uint64_t> bytes, Span<const std::uint64_t> offsets) {
  std::uint64_t e = 0;
  for (std::size_t r = 0; r < bytes.size() && r < offsets.size(); ++r)
    if (bytes[r] > 0) e = std::max(e, offsets[r] + bytes[r]);
  return e;
}

class HostStagingCommunicator final : public Communicator {
 public:
  HostStagingCommunicator(Communicator& inner, cudaStream_t stream)
      : inner_(inner), stream_(stream), name_(std::string(inner.backend()) + "+host") {}

  std::uint32_t rank() const override { return inner_.rank(); }
  std::uint32_t size() const override { return inner_.size(); }
  const char* backend() const override { return name_.c_str(); }
  bool device_buffers() const override { return false; }

  Status allreduce(const void* send, void* recv, std::uint64_t count, DType dtype,
                   ReduceOp op) override {
    const std::uint64_t bytes = count * dtype_size(dtype);
    GRADCOMP_TRY(stage_in(send, bytes, 0));
    GRADCOMP_TRY(recv_.reserve(bytes));
    GRADCOMP_TRY(inner_.allreduce(send_.get(), recv_.get(), count, dtype, op));
    return stage_out(recv, bytes);
  }
  Status reduce_scatter(const void* send, void* recv, std::uint64_t count, DType dtype,
                        ReduceOp op) override {
    const std::uint64_t bytes = count * dtype_size(dtype);
    GRADCOMP_TRY(stage_in(send, bytes * size(), 0));
    GRADCOMP_TRY(recv_.reserve(bytes));
    GRADCOMP_TRY(inner_.reduce_scatter(send_.get(), recv_.get(), count, dtype, op));
    return stage_out(recv, bytes);
  }
  Status allgather(const void* send, void* recv, std::uint64_t bytes) override {
    GRADCOMP_TRY(stage_in(send, bytes, 0));
    GRADCOMP_TRY(recv_.reserve(bytes * size()));
    GRADCOMP_TRY(inner_.allgather(send_.get(), recv_.get(), bytes));
    return stage_out(recv, bytes * size());
  }
  Status allgatherv(const void* send, std::uint64_t send_bytes, void* recv,
                    Span<const std::uint64_t> recv_bytes,
                    Span<const std::uint64_t> recv_offsets) override {
    const std::uint64_t total = extent(recv_bytes, recv_offsets);
    GRADCOMP_TRY(stage_in(send, send_bytes, 0));
    GRADCOMP_TRY(recv_.reserve(total));
    GRADCOMP_TRY(inner_.allgatherv(send_.get(), send_bytes, recv_.get(), recv_bytes, recv_offsets));
    return stage_out_blocks(recv, recv_bytes, recv_offsets);
  }
  Status alltoall(const void* send, void* recv, std::uint64_t bytes) override {
    GRADCOMP_TRY(stage_in(send, bytes * size(), 0));
    GRADCOMP_TRY(recv_.reserve(bytes * size()));
    GRADCOMP_TRY(inner_.alltoall(send_.get(), recv_.get(), bytes));
    return stage_out(recv, bytes * size());
  }
  Status alltoallv(const void* send, Span<const std::uint64_t> send_bytes,
                   Span<const std::uint64_t> send_offsets, void* recv,
                   Span<const std::uint64_t> recv_bytes,
                   Span<const std::uint64_t> recv_offsets) override {
    GRADCOMP_TRY(stage_in(send, extent(send_bytes, send_offsets), 0));
    GRADCOMP_TRY(recv_.reserve(extent(recv_bytes, recv_offsets)));
    GRADCOMP_TRY(inner_.alltoallv(send_.get(), send_bytes, send_offsets, recv_.get(), recv_bytes,
                                  recv_offsets));
    return stage_out_blocks(recv, recv_bytes, recv_offsets);
  }
  Status broadcast(void* buffer, std::uint64_t bytes, std::uint32_t root) override {
    GRADCOMP_TRY(stage_in(buffer, bytes, 0));
    GRADCOMP_TRY(inner_.broadcast(send_.get(), bytes, root));
    GC_STAGE_CUDA(cudaMemcpyAsync(buffer, send_.get(), bytes, cudaMemcpyDeviceToHost, stream_),
                  "copy out");
    GC_STAGE_CUDA(cudaStreamSynchronize(stream_), "synchronise");
    return Status::success();
  }
  Status barrier() override { return inner_.barrier(); }

 private:
  // send_[offset, offset + bytes) = host bytes.
  Status stage_in(const void* host, std::uint64_t bytes, std::uint64_t offset) {
    GRADCOMP_TRY(send_.reserve(offset + bytes));
    if (bytes > 0) {
      GC_STAGE_CUDA(
          cudaMemcpyAsync(send_.get() + offset, host, bytes, cudaMemcpyHostToDevice, stream_),
          "copy in");
    }
    return Status::success();
  }
  Status stage_out(void* host, std::uint64_t bytes) {
    if (bytes > 0) {
      GC_STAGE_CUDA(cudaMemcpyAsync(host, recv_.get(), bytes, cudaMemcpyDeviceToHost, stream_),
                    "copy out");
    }
    GC_STAGE_CUDA(cudaStreamSynchronize(stream_), "synchronise");
    return Status::success();
  }

  // Only the received blocks: bytes of recv outside them belong to the caller.
  Status stage_out_blocks(void* host, Span<const std::uint64_t> bytes,
                          Span<const std::uint64_t> offsets) {
    for (std::size_t r = 0; r < bytes.size(); ++r) {
      if (bytes[r] == 0) continue;
      GC_STAGE_CUDA(cudaMemcpyAsync(static_cast<char*>(host) + offsets[r], recv_.get() + offsets[r],
                                    bytes[r], cudaMemcpyDeviceToHost, stream_),
                    "copy out");
    }
    GC_STAGE_CUDA(cudaStreamSynchronize(stream_), "synchronise");
    return Status::success();
  }

  Communicator& inner_;
  cudaStream_t stream_;
  std::string name_;
  DeviceScratch send_, recv_;
};

}  // namespace

Result<std::unique_ptr<Communicator>> make_host_staging_communicator(Communicator& device_comm,
                                                                     cudaStream_t stream) {
  GRADCOMP_CHECK_ARG(device_comm.device_buffers(), "host staging: the ", device_comm.backend(),
                     " communicator already takes host buffers");
  return std::unique_ptr<Communicator>(new HostStagingCommunicator(device_comm, stream));
}

}  // namespace gradcomp::coll
