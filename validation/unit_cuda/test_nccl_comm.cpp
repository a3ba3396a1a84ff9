// The NCCL communicator under mpiexec -n 2 (or more): every collective of the interface on
// device buffers against values computed on the host, and a compressed exchange (cuda:native
// sign payloads allgathered with allgatherv, decompress-accumulated on the device) against the
// oracle; then every compressed collective algorithm over the host-staging view of the NCCL
// communicator, bit-equal (outputs, server memory, wire bytes) to the same call over MPI.
// Without a CUDA device on every rank: exit 77 ("no CUDA device: skipping").
#include <cuda_runtime.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "gradcomp/coll/compressed.hpp"
#include "gradcomp/coll/mpi_communicator.hpp"
#include "gradcomp/coll/nccl_communicator.hpp"
#include "gradcomp/kernels/cuda.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/ref/compress.hpp"

namespace {

int g_failures = 0;
int g_rank = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", g_rank, what.c_str());
  }
}
void expect_ok(const gradcomp::Status& s, const std::string& what) {
  expect(s.ok(), what + ": " + s.to_string());
}

template <class T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  cudaMalloc(&d, h.size() * sizeof(T) + 1);
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T>
std::vector<T> to_host(const T* d, std::size_t n, cudaStream_t s) {
  std::vector<T> h(n);
  cudaStreamSynchronize(s);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

void run(gradcomp::Communicator& comm, cudaStream_t s) {
  using namespace gradcomp;
  const std::uint32_t P = comm.size(), r = comm.rank();
  expect(comm.device_buffers() && std::string(comm.backend()) == "nccl", "backend identity");

  // allreduce sum / max of small integers (exact in f32).
  const std::uint64_t n = 1000;
  std::vector<float> x(n);
  for (std::uint64_t i = 0; i < n; ++i) x[i] = static_cast<float>((i % 7) + r);
  float* dx = to_device(x);
  expect_ok(comm.allreduce(dx, dx, n, DType::kF32, ReduceOp::kSum), "allreduce");
  auto y = to_host(dx, n, s);
  bool ok = true;
  for (std::uint64_t i = 0; i < n; ++i) {
    ok &= y[i] == static_cast<float>(P * (i % 7) + P * (P - 1) / 2);
  }
  expect(ok, "allreduce sum values");
  expect_ok(comm.allreduce(dx, dx, n, DType::kF32, ReduceOp::kMax), "allreduce max");

  // allgatherv: rank q contributes q + 3 bytes of value q.
  std::vector<std::uint64_t> bytes(P), offs(P);
  for (std::uint32_t q = 0; q < P; ++q) bytes[q] = q + 3;
  std::exclusive_scan(bytes.begin(), bytes.end(), offs.begin(), std::uint64_t{0});
  const std::uint64_t total = offs[P - 1] + bytes[P - 1];
  std::vector<std::uint8_t> mine(bytes[r], static_cast<std::uint8_t>(r));
  std::uint8_t* dm = to_device(mine);
  std::uint8_t* dall = to_device(std::vector<std::uint8_t>(total, 0xEE));
  expect_ok(comm.allgatherv(dm, bytes[r], dall, bytes, offs), "allgatherv");
  auto all = to_host(dall, total, s);
  ok = true;
  for (std::uint32_t q = 0; q < P; ++q)
    for (std::uint64_t b = 0; b < bytes[q]; ++b) ok &= all[offs[q] + b] == q;
  expect(ok, "allgatherv values");
  expect(
      comm.allgatherv(dm, bytes[r] + 1, dall, bytes, offs).code() == StatusCode::kInvalidArgument,
      "allgatherv rejects a send size that disagrees with recv_bytes");

  // alltoall: block j of rank q holds 16 * q + j.
  std::vector<std::uint8_t> blocks(4 * P);
  for (std::uint32_t j = 0; j < P; ++j)
    for (int b = 0; b < 4; ++b) blocks[4 * j + b] = static_cast<std::uint8_t>(16 * r + j);
  std::uint8_t* db = to_device(blocks);
  std::uint8_t* dr = to_device(std::vector<std::uint8_t>(4 * P, 0));
  expect_ok(comm.alltoall(db, dr, 4), "alltoall");
  auto got = to_host(dr, 4 * P, s);
  ok = true;
  for (std::uint32_t q = 0; q < P; ++q) ok &= got[4 * q] == 16 * q + r;
  expect(ok, "alltoall values");

  // broadcast from the last rank.
  std::vector<std::uint8_t> bc(64, static_cast<std::uint8_t>(r));
  std::uint8_t* dbc = to_device(bc);
  expect_ok(comm.broadcast(dbc, 64, P - 1), "broadcast");
  auto bh = to_host(dbc, 64, s);
  expect(bh[0] == P - 1 && bh[63] == P - 1, "broadcast values");
  expect_ok(comm.barrier(), "barrier");

  // Compressed exchange: sign payloads of every rank, accumulated on the device vs the oracle.
  auto d = parse_compressor("blocksign:n=4097,block=256");
  const CompressorDesc desc = d.value();
  std::vector<float> g(desc.n);
  for (std::uint64_t i = 0; i < desc.n; ++i) {
    g[i] = static_cast<float>(static_cast<int>((i * 7 + r * 13) % 15) - 7) * 0.25f;
  }
  CompressContext ctx;
  ctx.rank = r;
  const std::uint64_t pb = cuda::payload_bytes(desc);
  float* dg = to_device(g);
  std::uint8_t* dp = to_device(std::vector<std::uint8_t>(pb));
  std::uint64_t size = 0;
  expect_ok(cuda::compress(desc, ctx, dg, dp, pb, &size, s), "cuda compress");
  std::vector<std::uint64_t> pbytes(P, pb), poffs(P);
  for (std::uint32_t q = 0; q < P; ++q) poffs[q] = q * pb;
  std::uint8_t* dps = to_device(std::vector<std::uint8_t>(P * pb));
  expect_ok(comm.allgatherv(dp, size, dps, pbytes, poffs), "allgatherv payloads");
  float* dacc = to_device(std::vector<float>(desc.n, 0.0f));
  for (std::uint32_t q = 0; q < P; ++q) {
    expect_ok(cuda::decompress_accumulate(desc, ctx, dps + poffs[q], pb,
                                          1.0f / static_cast<float>(P), dacc, s),
              "decompress_accumulate");
  }
  auto acc = to_host(dacc, desc.n, s);
  // Oracle: every rank's payload from the reference, accumulated in rank order.
  const CompressorOps rops = select_impl(desc, "ref:any").value()->ops(desc.kind);
  std::vector<float> want(desc.n, 0.0f);
  for (std::uint32_t q = 0; q < P; ++q) {
    std::vector<float> gq(desc.n);
    for (std::uint64_t i = 0; i < desc.n; ++i) {
      gq[i] = static_cast<float>(static_cast<int>((i * 7 + q * 13) % 15) - 7) * 0.25f;
    }
    std::vector<std::uint8_t> p;
    expect_ok(ref::compress(desc, ctx, gq, p), "ref compress");
    expect_ok(
        rops.decompress_accumulate(desc, ctx, p, 1.0f / static_cast<float>(P), Span<float>(want)),
        "ref accumulate");
  }
  expect(std::memcmp(acc.data(), want.data(), 4 * desc.n) == 0,
         "compressed allgather + accumulate equals the oracle bit for bit");
  for (void* p : {static_cast<void*>(dx), static_cast<void*>(dm), static_cast<void*>(dall),
                  static_cast<void*>(db), static_cast<void*>(dr), static_cast<void*>(dbc),
                  static_cast<void*>(dg), static_cast<void*>(dp), static_cast<void*>(dps),
                  static_cast<void*>(dacc)}) {
    cudaFree(p);
  }
}

// The compressed collectives are written over host buffers; over the host-staging view of NCCL
// they must give exactly what they give over MPI (same algorithm code, same reduction order).
void run_staged(gradcomp::Communicator& nccl, cudaStream_t s) {
  using namespace gradcomp;
  using coll::Algorithm;
  auto staged = coll::make_host_staging_communicator(nccl, s);
  expect_ok(staged.status(), "make_host_staging_communicator");
  auto mpi = coll::make_mpi_communicator(MPI_COMM_WORLD);
  expect_ok(mpi.status(), "make_mpi_communicator");
  if (!staged.ok() || !mpi.ok()) return;
  expect(!staged.value()->device_buffers(), "staged communicator takes host buffers");
  expect(!coll::make_host_staging_communicator(*mpi.value(), s).ok(),
         "staging refuses a host-buffer communicator");
  const std::uint32_t r = nccl.rank(), P = nccl.size();
  struct Case {
    Algorithm algorithm;
    const char* compressor;
  };
  const Case cases[] = {{Algorithm::kDense, "identity"},
                        {Algorithm::kAllgather, "topk:density=0.01"},
                        {Algorithm::kAllgather, "dgc:density=0.01"},
                        {Algorithm::kSharedSupport, "randk:density=0.05"},
                        {Algorithm::kSharedSupport, "rbgs:density=0.1"},
                        {Algorithm::kMajority, "sign"},
                        {Algorithm::kTwoPhase, "blocksign:block=64"},
                        {Algorithm::kTwoPhase, "qsgd"},
                        {Algorithm::kTwoPhase, "terngrad"}};
  for (const Case& c : cases) {
    const std::string text =
        std::string(c.compressor) +
        (std::string(c.compressor).find(':') == std::string::npos ? ":" : ",") + "n=100003";
    const CompressorDesc desc = parse_compressor(text).value();
    const CompressorImpl& impl = *select_impl(desc, "ref:any").value();
    std::vector<float> in(desc.n);
    for (std::uint64_t i = 0; i < desc.n; ++i)
      in[i] = std::sin(0.001f * static_cast<float>(i * (r + 1))) * static_cast<float>(1 + i % 7);
    CompressContext ctx;
    ctx.rank = r;
    coll::CollectiveOptions opt;
    std::vector<float> out[2];
    std::vector<float> server[2];
    coll::CollStats stats[2];
    Communicator* comms[2] = {staged.value().get(), mpi.value().get()};
    for (int k = 0; k < 2; ++k) {
      out[k].assign(desc.n, 0.0f);
      Status st;
      if (c.algorithm == Algorithm::kTwoPhase) {
        server[k].assign(chunk_bounds(desc.n, P)[r].size(), 0.25f);
        st = coll::two_phase_allreduce(*comms[k], impl, desc, desc, ctx, in, server[k], 1.0, out[k],
                                       Span<float>(), opt, &stats[k]);
      } else {
        st = coll::compressed_allreduce(*comms[k], c.algorithm, impl, desc, ctx, in, out[k], opt,
                                        &stats[k]);
      }
      expect_ok(st, text + (k == 0 ? " over nccl+host" : " over mpi"));
    }
    expect(std::memcmp(out[0].data(), out[1].data(), 4 * desc.n) == 0,
           text + ": staged NCCL output equals the MPI output bit for bit");
    expect(server[0] == server[1], text + ": server memory equal");
    expect(stats[0].bytes_sent == stats[1].bytes_sent &&
               stats[0].bytes_received == stats[1].bytes_received,
           text + ": same wire bytes");
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  int ndev = 0;
  const cudaError_t e = cudaGetDeviceCount(&ndev);
  int have = (e == cudaSuccess && ndev > 0) ? 1 : 0, all = 0;
  MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all) {
    if (g_rank == 0) {
      std::printf("no CUDA device: skipping the NCCL communicator test (rank 0: %s)\n",
                  e == cudaSuccess ? "0 devices" : cudaGetErrorName(e));
    }
    // The factory must refuse cleanly (no rank stuck in ncclCommInitRank).
    auto c = gradcomp::coll::make_nccl_communicator(MPI_COMM_WORLD, nullptr);
    int bad = (!c.ok() && c.status().code() == gradcomp::StatusCode::kCudaError) ? 0 : 1, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any && g_rank == 0)
      std::fprintf(stderr, "FAILED: factory did not refuse with kCudaError\n");
    MPI_Finalize();
    return any ? 1 : 77;
  }
  cudaSetDevice(g_rank % ndev);  // one rank per GPU where there are enough
  cudaStream_t s = nullptr;
  cudaStreamCreate(&s);
  {
    auto c = gradcomp::coll::make_nccl_communicator(MPI_COMM_WORLD, s);
    if (!c.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", g_rank, c.status().to_string().c_str());
      ++g_failures;
    } else {
      run(*c.value(), s);
      run_staged(*c.value(), s);
    }
  }
  cudaStreamDestroy(s);
  int total = 0;
  MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0) std::printf("nccl communicator: %d failure(s)\n", total);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
