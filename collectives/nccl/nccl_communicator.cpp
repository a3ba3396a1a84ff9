// The NCCL communicator: every collective of the interface on device buffers and one stream.
// Variable-size exchanges (allgatherv, alltoallv) are grouped ncclSend/ncclRecv; the rank's own
// block is a device-to-device copy on the same stream (NCCL p2p to self is avoided so that
// in-place calls, where the block already sits in place, need nothing at all).
#include "gradcomp/coll/nccl_communicator.hpp"

#include <nccl.h>

#include <cstring>
#include <string>
#include <vector>

namespace gradcomp::coll {
namespace {

Status nccl_status(ncclResult_t r, ncclComm_t comm, const char* what) {
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  return make_status(StatusCode::kNcclError, "nccl ", what, ": ", ncclGetErrorString(r),
                     (last && *last) ? std::string(" (") + last + ")" : std::string());
}
Status cuda_status(cudaError_t e, const char* what) {
  return make_status(StatusCode::kCudaError, "nccl ", what, ": ", cudaGetErrorName(e), " (",
                     cudaGetErrorString(e), ")");
}
Status mpi_status(int code, const char* what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, msg, &len);
  return make_status(StatusCode::kMpiError, "nccl bootstrap ", what, ": ", std::string(msg, len));
}

#define GC_NCCL(expr, what)                                           \
  do {                                                                \
    const ncclResult_t gc_r_ = (expr);                                \
    if (gc_r_ != ncclSuccess) return nccl_status(gc_r_, comm_, what); \
  } while (0)
#define GC_CUDA(expr, what)                                    \
  do {                                                         \
    const cudaError_t gc_e_ = (expr);                          \
    if (gc_e_ != cudaSuccess) return cuda_status(gc_e_, what); \
  } while (0)

Result<ncclDataType_t> nccl_type(DType dt) {
  switch (dt) {
    case DType::kF32: return ncclFloat32;
    case DType::kF16: return ncclFloat16;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF64: return ncclFloat64;
    case DType::kS8: return ncclInt8;
    case DType::kU8: return ncclUint8;
    case DType::kS32: return ncclInt32;
    case DType::kU32: return ncclUint32;
  }
  return make_status(StatusCode::kInvalidArgument, "nccl: unknown dtype");
}

Result<ncclRedOp_t> nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return make_status(StatusCode::kInvalidArgument, "nccl: unknown reduce op");
}

const char* as_bytes(const void* p) { return static_cast<const char*>(p); }
char* as_bytes(void* p) { return static_cast<char*>(p); }

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream, MPI_Comm mpi, std::uint32_t rank,
                   std::uint32_t size)
      : comm_(comm), stream_(stream), mpi_(mpi), rank_(rank), size_(size) {}
  ~NcclCommunicator() override {
    (void)cudaStreamSynchronize(stream_);
    (void)ncclCommDestroy(comm_);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&mpi_);
  }

  std::uint32_t rank() const override { return rank_; }
  std::uint32_t size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  bool device_buffers() const override { return true; }

  Status allreduce(const void* send, void* recv, std::uint64_t count, DType dtype,
                   ReduceOp op) override {
    GRADCOMP_TRY(check_async());
    if (count == 0) return Status::success();
    GRADCOMP_CHECK_ARG(send && recv, "nccl allreduce: null buffer for ", count, " elements");
    auto t = nccl_type(dtype);
    auto o = nccl_op(op);
    if (!t.ok()) return t.status();
    if (!o.ok()) return o.status();
    GC_NCCL(ncclAllReduce(send, recv, count, t.value(), o.value(), comm_, stream_), "allreduce");
    return Status::success();
  }

  Status reduce_scatter(const void* send, void* recv, std::uint64_t count, DType dtype,
                        ReduceOp op) override {
    GRADCOMP_TRY(check_async());
    if (count == 0) return Status::success();
    GRADCOMP_CHECK_ARG(send && recv, "nccl reduce_scatter: null buffer");
    auto t = nccl_type(dtype);
    auto o = nccl_op(op);
    if (!t.ok()) return t.status();
    if (!o.ok()) return o.status();
    GC_NCCL(ncclReduceScatter(send, recv, count, t.value(), o.value(), comm_, stream_),
            "reduce_scatter");
    return Status::success();
  }

  Status allgather(const void* send, void* recv, std::uint64_t bytes) override {
    GRADCOMP_TRY(check_async());
    if (bytes == 0) return Status::success();
    GRADCOMP_CHECK_ARG(send && recv, "nccl allgather: null buffer");
    GC_NCCL(ncclAllGather(send, recv, bytes, ncclUint8, comm_, stream_), "allgather");
    return Status::success();
  }

  Status allgatherv(const void* send, std::uint64_t send_bytes, void* recv,
                    Span<const std::uint64_t> recv_bytes,
                    Span<const std::uint64_t> recv_offsets) override {
    GRADCOMP_TRY(check_async());
    GRADCOMP_CHECK_ARG(recv_bytes.size() == size_ && recv_offsets.size() == size_,
                       "nccl allgatherv: recv_bytes and recv_offsets need one entry per rank (",
                       size_, "), got ", recv_bytes.size(), " and ", recv_offsets.size());
    GRADCOMP_CHECK_ARG(send_bytes == recv_bytes[rank_], "nccl allgatherv: rank ", rank_, " sends ",
                       send_bytes, " bytes but recv_bytes[", rank_, "] = ", recv_bytes[rank_]);
    GRADCOMP_CHECK_ARG(send != nullptr || send_bytes == 0, "nccl allgatherv: null send buffer");
    std::vector<std::uint64_t> send_to(size_, send_bytes), send_off(size_, 0);
    // Every peer receives the same block: the send side of an alltoallv with zero offsets.
    return exchange(send, send_to.data(), send_off.data(), recv, recv_bytes.data(),
                    recv_offsets.data(), "allgatherv");
  }

  Status alltoall(const void* send, void* recv, std::uint64_t bytes) override {
    GRADCOMP_TRY(check_async());
    std::vector<std::uint64_t> sizes(size_, bytes), offs(size_);
    for (std::uint32_t r = 0; r < size_; ++r) offs[r] = r * bytes;
    return exchange(send, sizes.data(), offs.data(), recv, sizes.data(), offs.data(), "alltoall");
  }

  Status alltoallv(const void* send, Span<const std::uint64_t> send_bytes,
                   Span<const std::uint64_t> send_offsets, void* recv,
                   Span<const std::uint64_t> recv_bytes,
                   Span<const std::uint64_t> recv_offsets) override {
    GRADCOMP_TRY(check_async());
    GRADCOMP_CHECK_ARG(send_bytes.size() == size_ && send_offsets.size() == size_ &&
                           recv_bytes.size() == size_ && recv_offsets.size() == size_,
                       "nccl alltoallv: every count/offset list needs one entry per rank (", size_,
                       ")");
    GRADCOMP_CHECK_ARG(send_bytes[rank_] == recv_bytes[rank_], "nccl alltoallv: rank ", rank_,
                       " sends itself ", send_bytes[rank_], " bytes but expects ",
                       recv_bytes[rank_]);
    return exchange(send, send_bytes.data(), send_offsets.data(), recv, recv_bytes.data(),
                    recv_offsets.data(), "alltoallv");
  }

  Status broadcast(void* buffer, std::uint64_t bytes, std::uint32_t root) override {
    GRADCOMP_TRY(check_async());
    GRADCOMP_CHECK_ARG(root < size_, "nccl broadcast: root ", root, " >= size ", size_);
    if (bytes == 0) return Status::success();
    GRADCOMP_CHECK_ARG(buffer != nullptr, "nccl broadcast: null buffer");
    GC_NCCL(ncclBroadcast(buffer, buffer, bytes, ncclUint8, static_cast<int>(root), comm_, stream_),
            "broadcast");
    return Status::success();
  }

  Status barrier() override {
    GRADCOMP_TRY(check_async());
    // Everything enqueued so far has completed on this rank, then every rank has got here.
    GC_CUDA(cudaStreamSynchronize(stream_), "barrier (stream synchronize)");
    GRADCOMP_TRY(check_async());
    const int rc = MPI_Barrier(mpi_);
    if (rc != MPI_SUCCESS) return mpi_status(rc, "barrier");
    return Status::success();
  }

 private:
  // Grouped point-to-point: send_bytes[j] bytes at send + send_off[j] to rank j, recv_bytes[i]
  // bytes from rank i to recv + recv_off[i]. Zero-byte messages are skipped on both sides (the
  // counts agree across ranks, as in MPI). Own block: a device copy unless already in place.
  Status exchange(const void* send, const std::uint64_t* send_bytes, const std::uint64_t* send_off,
                  void* recv, const std::uint64_t* recv_bytes, const std::uint64_t* recv_off,
                  const char* what) {
    for (std::uint32_t r = 0; r < size_; ++r) {
      GRADCOMP_CHECK_ARG(
          (send != nullptr || send_bytes[r] == 0) && (recv != nullptr || recv_bytes[r] == 0),
          "nccl ", what, ": null buffer for a non-empty block (rank ", r, ")");
    }
    const char* self_src = as_bytes(send) + (send ? send_off[rank_] : 0);
    char* self_dst = as_bytes(recv) + (recv ? recv_off[rank_] : 0);
    if (recv_bytes[rank_] > 0 && self_src != self_dst) {
      GC_CUDA(
          cudaMemcpyAsync(self_dst, self_src, recv_bytes[rank_], cudaMemcpyDeviceToDevice, stream_),
          what);
    }
    GC_NCCL(ncclGroupStart(), what);
    ncclResult_t first = ncclSuccess;
    for (std::uint32_t r = 0; r < size_ && first == ncclSuccess; ++r) {
      if (r == rank_) continue;
      if (send_bytes[r] > 0) {
        first = ncclSend(as_bytes(send) + send_off[r], send_bytes[r], ncclUint8,
                         static_cast<int>(r), comm_, stream_);
      }
      if (first == ncclSuccess && recv_bytes[r] > 0) {
        first = ncclRecv(as_bytes(recv) + recv_off[r], recv_bytes[r], ncclUint8,
                         static_cast<int>(r), comm_, stream_);
      }
    }
    const ncclResult_t end = ncclGroupEnd();  // always close the group
    if (first != ncclSuccess) return nccl_status(first, comm_, what);
    if (end != ncclSuccess) return nccl_status(end, comm_, what);
    return Status::success();
  }

  // An error raised asynchronously by an earlier collective (network failure, peer abort).
  Status check_async() {
    ncclResult_t async = ncclSuccess;
    GC_NCCL(ncclCommGetAsyncError(comm_, &async), "async error query");
    if (async != ncclSuccess && async != ncclInProgress) {
      return nccl_status(async, comm_, "asynchronous error");
    }
    return Status::success();
  }

  ncclComm_t comm_;
  cudaStream_t stream_;
  MPI_Comm mpi_;
  std::uint32_t rank_, size_;
};

}  // namespace

Result<std::unique_ptr<Communicator>> make_nccl_communicator(MPI_Comm comm, cudaStream_t stream) {
  MPI_Comm dup = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(comm, &dup);
  if (rc != MPI_SUCCESS) return mpi_status(rc, "MPI_Comm_dup");
  MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  auto fail = [&dup](Status s) -> Result<std::unique_ptr<Communicator>> {
    MPI_Comm_free(&dup);
    return s;
  };
  int rank = 0, size = 0;
  MPI_Comm_rank(dup, &rank);
  MPI_Comm_size(dup, &size);

  // Every rank must have a device before any rank enters ncclCommInitRank (which would wait for
  // the missing ones forever): agree on it first.
  int ndev = 0;
  const cudaError_t de = cudaGetDeviceCount(&ndev);
  int have = (de == cudaSuccess && ndev > 0) ? 1 : 0, all = 0;
  rc = MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, dup);
  if (rc != MPI_SUCCESS) return fail(mpi_status(rc, "device agreement"));
  if (!all) {
    (void)cudaGetLastError();
    return fail(make_status(
        StatusCode::kCudaError, "nccl: no CUDA device on ", have ? "another rank" : "this rank",
        have ? std::string() : std::string(" (cudaGetDeviceCount: ") + cudaGetErrorName(de) + ")"));
  }

  // Rank 0 makes the unique id; its success travels with it so nobody waits on a bad id.
  struct {
    int ok;
    ncclUniqueId id;
  } boot{};
  ncclResult_t r = ncclSuccess;
  if (rank == 0) {
    r = ncclGetUniqueId(&boot.id);
    boot.ok = r == ncclSuccess ? 1 : 0;
  }
  rc = MPI_Bcast(&boot, static_cast<int>(sizeof boot), MPI_BYTE, 0, dup);
  if (rc != MPI_SUCCESS) return fail(mpi_status(rc, "unique id broadcast"));
  if (!boot.ok) {
    return fail(make_status(StatusCode::kNcclError, "nccl ncclGetUniqueId on rank 0: ",
                            rank == 0 ? ncclGetErrorString(r) : "failed"));
  }
  ncclComm_t nc = nullptr;
  r = ncclCommInitRank(&nc, size, boot.id, rank);
  if (r != ncclSuccess) {
    return fail(
        make_status(StatusCode::kNcclError, "nccl ncclCommInitRank: ", ncclGetErrorString(r)));
  }
  return std::unique_ptr<Communicator>(new NcclCommunicator(
      nc, stream, dup, static_cast<std::uint32_t>(rank), static_cast<std::uint32_t>(size)));
}

}  // namespace gradcomp::coll
