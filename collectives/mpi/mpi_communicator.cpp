// The MPI communicator: the Communicator interface over Open MPI's C API on host buffers.
//
// - The communicator works on its own duplicate of the caller's comm with MPI_ERRORS_RETURN, so
//   a transport error becomes a kMpiError Status carrying MPI_Error_string, never an abort, and
//   the caller's error handler is left alone.
// - MPI counts and displacements are int. Reductions and broadcasts larger than INT_MAX elements
//   are split into several calls (same result, the reduction is element-wise); the data-movement
//   calls with per-rank sizes or offsets above INT_MAX bytes return kInvalidArgument naming the
//   field (splitting them would need per-rank derived datatypes; payloads that large are not
//   expected: a 2 GiB payload is a 512 Mi-element dense tensor per rank).
#include "gradcomp/coll/mpi_communicator.hpp"

#include <climits>
#include <cstdint>
#include <string>
#include <vector>

namespace gradcomp::coll {
namespace {

constexpr std::uint64_t kMaxInt = static_cast<std::uint64_t>(INT_MAX);

Status mpi_status(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return Status::success();
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return make_status(StatusCode::kMpiError, "mpi: ", what, " failed: ", std::string(text, len),
                     " (error code ", rc, ")");
}

Result<MPI_Datatype> mpi_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kF64: return MPI_DOUBLE;
    case DType::kS8: return MPI_INT8_T;
    case DType::kU8: return MPI_UINT8_T;
    case DType::kS32: return MPI_INT32_T;
    case DType::kU32: return MPI_UINT32_T;
    case DType::kF16:
    case DType::kBF16: break;
  }
  // MPI has no 16-bit float types with a sum; reducing them would need a user op.
  return make_status(StatusCode::kUnimplemented, "mpi: reductions of dtype ", dtype_name(dtype),
                     " are not supported (f32, f64, s8, u8, s32, u32 are)");
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::uint32_t rank, std::uint32_t size)
      : comm_(comm), rank_(rank), size_(size) {}
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  std::uint32_t rank() const override { return rank_; }
  std::uint32_t size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  bool device_buffers() const override { return false; }

  Status allreduce(const void* send, void* recv, std::uint64_t count, DType dtype,
                   ReduceOp op) override {
    if (count == 0) return Status::success();
    GRADCOMP_CHECK_ARG(send != nullptr && recv != nullptr, "mpi allreduce: null buffer with count ",
                       count);
    Result<MPI_Datatype> type = mpi_type(dtype);
    if (!type.ok()) return type.status();
    const std::size_t elem = dtype_size(dtype);
    const bool in_place = send == recv;
    // Element-wise, so pieces of at most INT_MAX elements give the same result.
    for (std::uint64_t done = 0; done < count;) {
      const std::uint64_t piece = count - done < kMaxInt ? count - done : kMaxInt;
      auto* r = static_cast<std::uint8_t*>(recv) + done * elem;
      const void* s =
          in_place ? MPI_IN_PLACE : static_cast<const std::uint8_t*>(send) + done * elem;
      GRADCOMP_TRY(mpi_status(
          MPI_Allreduce(s, r, static_cast<int>(piece), *type, mpi_op(op), comm_), "MPI_Allreduce"));
      done += piece;
    }
    return Status::success();
  }

  Status reduce_scatter(const void* send, void* recv, std::uint64_t count, DType dtype,
                        ReduceOp op) override {
    if (count == 0) return Status::success();
    GRADCOMP_CHECK_ARG(send != nullptr && recv != nullptr,
                       "mpi reduce_scatter: null buffer with count ", count);
    GRADCOMP_CHECK_ARG(count <= kMaxInt, "mpi reduce_scatter: count ", count,
                       " per rank exceeds INT_MAX");
    GRADCOMP_CHECK_ARG(send != recv, "mpi reduce_scatter: send and recv must differ");
    Result<MPI_Datatype> type = mpi_type(dtype);
    if (!type.ok()) return type.status();
    return mpi_status(
        MPI_Reduce_scatter_block(send, recv, static_cast<int>(count), *type, mpi_op(op), comm_),
        "MPI_Reduce_scatter_block");
  }

  Status allgather(const void* send, void* recv, std::uint64_t bytes) override {
    if (bytes == 0) return Status::success();
    GRADCOMP_CHECK_ARG(send != nullptr && recv != nullptr, "mpi allgather: null buffer with bytes ",
                       bytes);
    GRADCOMP_CHECK_ARG(bytes <= kMaxInt, "mpi allgather: ", bytes,
                       " bytes per rank exceed INT_MAX");
    const bool in_place = send == static_cast<const std::uint8_t*>(recv) + rank_ * bytes;
    return mpi_status(MPI_Allgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(bytes),
                                    MPI_BYTE, recv, static_cast<int>(bytes), MPI_BYTE, comm_),
                      "MPI_Allgather");
  }

  Status allgatherv(const void* send, std::uint64_t send_bytes, void* recv,
                    Span<const std::uint64_t> recv_bytes,
                    Span<const std::uint64_t> recv_offsets) override {
    GRADCOMP_CHECK_ARG(recv_bytes.size() == size_ && recv_offsets.size() == size_,
                       "mpi allgatherv: recv_bytes and recv_offsets need one entry per rank (",
                       size_, "), got ", recv_bytes.size(), " and ", recv_offsets.size());
    GRADCOMP_CHECK_ARG(send_bytes == recv_bytes[rank_], "mpi allgatherv: rank ", rank_, " sends ",
                       send_bytes, " bytes but recv_bytes[", rank_, "] = ", recv_bytes[rank_]);
    std::vector<int> counts, displs;
    GRADCOMP_TRY(to_int("allgatherv", recv_bytes, recv_offsets, counts, displs));
    std::uint64_t total = 0;
    for (std::uint64_t b : recv_bytes) total += b;
    if (total == 0) return Status::success();
    GRADCOMP_CHECK_ARG(recv != nullptr, "mpi allgatherv: null recv buffer for ", total, " bytes");
    GRADCOMP_CHECK_ARG(send != nullptr || send_bytes == 0, "mpi allgatherv: null send buffer");
    const bool in_place =
        send_bytes > 0 && send == static_cast<const std::uint8_t*>(recv) + recv_offsets[rank_];
    return mpi_status(MPI_Allgatherv(in_place ? MPI_IN_PLACE : send, static_cast<int>(send_bytes),
                                     MPI_BYTE, recv, counts.data(), displs.data(), MPI_BYTE, comm_),
                      "MPI_Allgatherv");
  }

  Status alltoall(const void* send, void* recv, std::uint64_t bytes) override {
    if (bytes == 0) return Status::success();
    GRADCOMP_CHECK_ARG(send != nullptr && recv != nullptr, "mpi alltoall: null buffer with bytes ",
                       bytes);
    GRADCOMP_CHECK_ARG(bytes <= kMaxInt, "mpi alltoall: ", bytes,
                       " bytes per block exceed INT_MAX");
    const bool in_place = send == recv;
    return mpi_status(MPI_Alltoall(in_place ? MPI_IN_PLACE : send, static_cast<int>(bytes),
                                   MPI_BYTE, recv, static_cast<int>(bytes), MPI_BYTE, comm_),
                      "MPI_Alltoall");
  }

  Status alltoallv(const void* send, Span<const std::uint64_t> send_bytes,
                   Span<const std::uint64_t> send_offsets, void* recv,
                   Span<const std::uint64_t> recv_bytes,
                   Span<const std::uint64_t> recv_offsets) override {
    GRADCOMP_CHECK_ARG(send_bytes.size() == size_ && send_offsets.size() == size_ &&
                           recv_bytes.size() == size_ && recv_offsets.size() == size_,
                       "mpi alltoallv: sizes and offsets need one entry per rank (", size_, ")");
    GRADCOMP_CHECK_ARG(send != recv, "mpi alltoallv: in-place is not supported");
    std::vector<int> sc, sd, rc, rd;
    GRADCOMP_TRY(to_int("alltoallv (send)", send_bytes, send_offsets, sc, sd));
    GRADCOMP_TRY(to_int("alltoallv (recv)", recv_bytes, recv_offsets, rc, rd));
    return mpi_status(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv, rc.data(),
                                    rd.data(), MPI_BYTE, comm_),
                      "MPI_Alltoallv");
  }

  Status broadcast(void* buffer, std::uint64_t bytes, std::uint32_t root) override {
    GRADCOMP_CHECK_ARG(root < size_, "mpi broadcast: root ", root, " is not a rank of a ", size_,
                       "-rank communicator");
    if (bytes == 0) return Status::success();
    GRADCOMP_CHECK_ARG(buffer != nullptr, "mpi broadcast: null buffer with bytes ", bytes);
    for (std::uint64_t done = 0; done < bytes;) {
      const std::uint64_t piece = bytes - done < kMaxInt ? bytes - done : kMaxInt;
      GRADCOMP_TRY(
          mpi_status(MPI_Bcast(static_cast<std::uint8_t*>(buffer) + done, static_cast<int>(piece),
                               MPI_BYTE, static_cast<int>(root), comm_),
                     "MPI_Bcast"));
      done += piece;
    }
    return Status::success();
  }

  Status barrier() override { return mpi_status(MPI_Barrier(comm_), "MPI_Barrier"); }

 private:
  static Status to_int(const char* what, Span<const std::uint64_t> bytes,
                       Span<const std::uint64_t> offsets, std::vector<int>& counts,
                       std::vector<int>& displs) {
    counts.resize(bytes.size());
    displs.resize(offsets.size());
    for (std::size_t r = 0; r < bytes.size(); ++r) {
      GRADCOMP_CHECK_ARG(bytes[r] <= kMaxInt && offsets[r] <= kMaxInt, "mpi ", what, ": rank ", r,
                         " has ", bytes[r], " bytes at offset ", offsets[r],
                         ", beyond MPI's int range (INT_MAX = ", INT_MAX, ")");
      counts[r] = static_cast<int>(bytes[r]);
      displs[r] = static_cast<int>(offsets[r]);
    }
    return Status::success();
  }

  MPI_Comm comm_;
  std::uint32_t rank_;
  std::uint32_t size_;
};

}  // namespace

Result<std::unique_ptr<Communicator>> make_mpi_communicator(MPI_Comm comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  GRADCOMP_CHECK_ARG(initialized, "mpi: MPI_Init has not been called");
  GRADCOMP_CHECK_ARG(comm != MPI_COMM_NULL, "mpi: MPI_COMM_NULL is not a communicator");
  MPI_Comm dup = MPI_COMM_NULL;
  GRADCOMP_TRY(mpi_status(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup"));
  const int rc = MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  if (rc != MPI_SUCCESS) {
    MPI_Comm_free(&dup);
    return mpi_status(rc, "MPI_Comm_set_errhandler");
  }
  int rank = 0, size = 0;
  MPI_Comm_rank(dup, &rank);
  MPI_Comm_size(dup, &size);
  return std::unique_ptr<Communicator>(
      new MpiCommunicator(dup, static_cast<std::uint32_t>(rank), static_cast<std::uint32_t>(size)));
}

}  // namespace gradcomp::coll
