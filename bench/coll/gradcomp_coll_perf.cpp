// gradcomp-coll-perf: an nccl-tests style sweep of the compressed collectives over MPI
// (style.md B6). For every size from -b to -e (times -f) it prints and records one row for
// MPI_Allreduce of the dense fp32 vector and one row per --compressor: time, algbw (uncompressed
// bytes / time), busbw (algbw * 2(P-1)/P, the nccl-tests allreduce factor), wire bytes per rank
// (bytes sent + received by the busiest rank, headers, indices and scales included), the ratio
// of the dense row's wire bytes to the row's, and #wrong from a separate check iteration against
// the reference collective (reference/ref_collectives.cpp), never inside the timed loop.
//
//   mpiexec -n 2 gradcomp-coll-perf -b 1M -e 64M -f 4 -n 20 -w 5 -c 1
//       --compressor=topk:density=0.01 --compressor=blocksign --json=coll.json
//
// --algorithm=auto chooses per compressor: sign -> majority; blocksign, qsgd, terngrad ->
// two-phase (server memory kept across iterations); otherwise the break-even rule
// (choose_algorithm with Reduction::kMean). --mode=deterministic|fast (default fast).
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gradcomp/coll/compressed.hpp"
#include "gradcomp/coll/mpi_communicator.hpp"
#if defined(GRADCOMP_HAVE_NCCL)
#include <cuda_runtime_api.h>

#include "gradcomp/coll/nccl_communicator.hpp"
#endif
#include "gradcomp/ref/collectives.hpp"

namespace {

using gradcomp::Communicator;
using gradcomp::CompressorDesc;
using gradcomp::CompressorImpl;
using gradcomp::Span;
using gradcomp::Status;
using gradcomp::StatusCode;
using gradcomp::coll::Algorithm;

struct Options {
  std::uint64_t min_bytes = 1 << 20;
  std::uint64_t max_bytes = 1 << 20;
  std::uint64_t factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  std::vector<std::string> compressors;
  std::string algorithm = "auto";
  std::string impl = "any";
  gradcomp::coll::ReductionMode mode = gradcomp::coll::ReductionMode::kFast;
  std::string json;
  std::string backend = "mpi";
};

bool parse_size(const std::string& s, std::uint64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  std::uint64_t mult = 1;
  const std::string suffix(end);
  if (suffix == "K" || suffix == "k")
    mult = 1ull << 10;
  else if (suffix == "M" || suffix == "m")
    mult = 1ull << 20;
  else if (suffix == "G" || suffix == "g")
    mult = 1ull << 30;
  else if (!suffix.empty())
    return false;
  if (!(v >= 0)) return false;
  *out = static_cast<std::uint64_t>(v * static_cast<double>(mult));
  return true;
}

int usage(const char* msg) {
  std::fprintf(stderr,
               "gradcomp-coll-perf: %s\n"
               "usage: gradcomp-coll-perf [-b minbytes] [-e maxbytes] [-f factor] [-n iters]\n"
               "       [-w warmup] [-c 0|1] [--compressor=CASE]... [--algorithm=NAME]\n"
               "       [--impl=NAME] [--mode=fast|deterministic] [--backend=mpi|nccl]\n"
               "       [--json=FILE]\n",
               msg);
  return 2;
}

// --help: the flags, on stdout. parse_args returns kHelpShown so main exits 0.
constexpr int kHelpShown = -1;
int help() {
  std::printf(
      "usage: mpiexec -n P gradcomp-coll-perf [options]\n"
      "Sweeps message sizes like nccl-tests: compressed collectives against a dense\n"
      "MPI_Allreduce row per size (docs/collectives.md).\n"
      "  -b BYTES            smallest fp32 gradient size in bytes (K, M, G suffixes)\n"
      "  -e BYTES            largest size\n"
      "  -f FACTOR           size multiplication factor (>= 2)\n"
      "  -n ITERS            timed iterations per size\n"
      "  -w WARMUP           untimed warm-up iterations\n"
      "  -c 0|1              a separate check iteration against the reference collective (#wrong)\n"
      "  --compressor=CASE   compressor case string; repeat for several\n"
      "  --algorithm=NAME    auto (break-even rule), dense, allgather, shared-support, two-phase,\n"
      "                      majority\n"
      "  --impl=NAME         kernel implementation: any, ref:any, kk:serial\n"
      "  --mode=fast|deterministic  reduction order\n"
      "  --backend=mpi|nccl  transport: MPI on host buffers (default), or NCCL through its\n"
      "                      host-staging view (one GPU per rank; builds with NCCL only)\n"
      "  --json=FILE         results as JSON (schema in docs/collectives.md)\n");
  return kHelpShown;
}

int parse_args(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") return help();
    auto value = [&](const char* flag) -> const char* {
      if (a == flag && i + 1 < argc) return argv[++i];
      if (a.size() > 2 && a.rfind(flag, 0) == 0) return argv[i] + 2;  // -b1M
      return nullptr;
    };
    auto long_value = [&](const char* key) -> const char* {
      const std::string k = std::string("--") + key + "=";
      return a.rfind(k, 0) == 0 ? argv[i] + k.size() : nullptr;
    };
    const char* v = nullptr;
    if (a.rfind("--", 0) == 0) {
      if ((v = long_value("compressor")))
        o.compressors.push_back(v);
      else if ((v = long_value("algorithm")))
        o.algorithm = v;
      else if ((v = long_value("impl")))
        o.impl = v;
      else if ((v = long_value("json")))
        o.json = v;
      else if ((v = long_value("backend"))) {
        o.backend = v;
        if (o.backend != "mpi" && o.backend != "nccl")
          return usage("--backend must be mpi or nccl");
#if !defined(GRADCOMP_HAVE_NCCL)
        if (o.backend == "nccl") return usage("--backend=nccl: this build has no NCCL");
#endif
      } else if ((v = long_value("mode"))) {
        const std::string m = v;
        if (m == "fast")
          o.mode = gradcomp::coll::ReductionMode::kFast;
        else if (m == "deterministic")
          o.mode = gradcomp::coll::ReductionMode::kDeterministic;
        else
          return usage("--mode must be fast or deterministic");
      } else {
        return usage(("unknown option " + a).c_str());
      }
    } else if ((v = value("-b"))) {
      if (!parse_size(v, &o.min_bytes)) return usage("bad -b");
    } else if ((v = value("-e"))) {
      if (!parse_size(v, &o.max_bytes)) return usage("bad -e");
    } else if ((v = value("-f"))) {
      o.factor = std::strtoull(v, nullptr, 10);
    } else if ((v = value("-n"))) {
      o.iters = std::atoi(v);
    } else if ((v = value("-w"))) {
      o.warmup = std::atoi(v);
    } else if ((v = value("-c"))) {
      o.check = std::atoi(v) != 0;
    } else {
      return usage(("unknown argument " + a).c_str());
    }
  }
  if (o.factor < 2) return usage("-f must be >= 2");
  if (o.iters < 1 || o.warmup < 0) return usage("-n must be >= 1 and -w >= 0");
  if (o.min_bytes < 4 || o.max_bytes < o.min_bytes) return usage("need 4 <= -b <= -e");
  if (o.compressors.empty())
    o.compressors = {"topk:density=0.01", "randk:density=0.01", "sign", "blocksign"};
  return 0;
}

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}
// Exact fill (style.md B4): multiples of 1/64, a pure function of (rank, i).
float fill(std::uint32_t rank, std::uint64_t i) {
  return static_cast<float>(static_cast<int>(mix(rank * 7919ull + i * 2654435761ull + 5) % 1024) -
                            512) /
         64.0f;
}

std::string shell_line(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[512];
    if (std::fgets(buf, sizeof buf, f)) out = buf;
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string cpu_model() {
  std::ifstream is("/proc/cpuinfo");
  std::string line;
  while (std::getline(is, line)) {
    if (line.rfind("model name", 0) == 0) {
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown cpu";
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

struct Row {
  std::string compressor, algorithm;
  std::uint64_t count = 0, bytes = 0, wire = 0;
  double time_us = 0, algbw = 0, busbw = 0, ratio = 0;
  std::uint64_t wrong = 0;
};

double max_over_ranks(double v) {
  double m = v;
  MPI_Allreduce(&v, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return m;
}
std::uint64_t max_u64(std::uint64_t v) {
  std::uint64_t m = v;
  MPI_Allreduce(&v, &m, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return m;
}
std::uint64_t sum_u64(std::uint64_t v) {
  std::uint64_t m = v;
  MPI_Allreduce(&v, &m, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  return m;
}

// Times `op` (n iterations after w warm-up ones): mean seconds per call of the slowest rank.
template <class Op>
Status time_op(Communicator& comm, const Options& o, Op op, double* seconds) {
  for (int i = 0; i < o.warmup; ++i) GRADCOMP_TRY(op());
  GRADCOMP_TRY(comm.barrier());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.iters; ++i) GRADCOMP_TRY(op());
  const auto t1 = std::chrono::steady_clock::now();
  *seconds = max_over_ranks(std::chrono::duration<double>(t1 - t0).count() / o.iters);
  return Status::success();
}

}  // namespace

#if defined(GRADCOMP_HAVE_NCCL)
// --backend=nccl: the NCCL communicator (device buffers, one GPU per rank) behind its
// host-staging view, so the same host-buffer collectives run over NCCL.
struct NcclTransport {
  cudaStream_t stream = nullptr;
  std::unique_ptr<Communicator> device;
  ~NcclTransport() {
    device.reset();
    if (stream) (void)cudaStreamDestroy(stream);
  }
};
gradcomp::Result<std::unique_ptr<Communicator>> make_nccl_view(NcclTransport& t) {
  int devices = 0, rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    (void)cudaSetDevice(rank % devices);
    (void)cudaStreamCreate(&t.stream);
  }
  // Collective even without a device: every rank then gets kCudaError, none waits.
  auto d = gradcomp::coll::make_nccl_communicator(MPI_COMM_WORLD, t.stream);
  if (!d.ok()) return d.status();
  t.device = std::move(d).value();
  return gradcomp::coll::make_host_staging_communicator(*t.device, t.stream);
}
#endif

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  {
    Options o;
    rc = parse_args(argc, argv, o);
#if defined(GRADCOMP_HAVE_NCCL)
    NcclTransport nccl;
    auto made = rc != 0               ? gradcomp::Result<std::unique_ptr<Communicator>>(Status())
                : o.backend == "nccl" ? make_nccl_view(nccl)
                                      : gradcomp::coll::make_mpi_communicator(MPI_COMM_WORLD);
#else
    auto made = rc == 0 ? gradcomp::coll::make_mpi_communicator(MPI_COMM_WORLD)
                        : gradcomp::Result<std::unique_ptr<Communicator>>(Status());
#endif
    if (rc == 0 && !made.ok()) {
      std::fprintf(stderr, "%s\n", made.status().to_string().c_str());
      rc = 1;
    }
    if (rc != 0) {
      MPI_Finalize();
      return rc == kHelpShown ? 0 : rc;
    }
    Communicator& comm = **made;
    const std::uint32_t p = comm.size(), rank = comm.rank();
    const bool root = rank == 0;
    const double bus = 2.0 * (p - 1) / p;
    std::vector<Row> rows;
    if (root) {
      std::printf("# gradcomp-coll-perf: %u ranks, backend %s, mode %s, impl %s\n", p,
                  comm.backend(),
                  o.mode == gradcomp::coll::ReductionMode::kFast ? "fast" : "deterministic",
                  o.impl.c_str());
      std::printf("%12s %10s %-28s %-15s %10s %9s %9s %12s %8s %7s\n", "size(B)", "count",
                  "compressor", "algorithm", "time(us)", "algbw", "busbw", "wire(B)", "ratio",
                  "#wrong");
    }
    auto fail = [&](const std::string& what, const Status& s) {
      if (root)
        std::fprintf(stderr, "gradcomp-coll-perf: %s: %s\n", what.c_str(), s.to_string().c_str());
      rc = 1;
    };
    for (std::uint64_t bytes = o.min_bytes; bytes <= o.max_bytes && rc == 0; bytes *= o.factor) {
      const std::uint64_t n = bytes / 4;
      std::vector<float> in(n), out(n);
      for (std::uint64_t i = 0; i < n; ++i) in[i] = fill(rank, i);
      const double dense_wire = 2.0 * 4.0 * static_cast<double>(n);  // sent + received

      // Dense MPI_Allreduce row (sum, in place on a copy).
      {
        std::vector<float> buf = in;
        double sec = 0;
        Status s = time_op(
            comm, o,
            [&] {
              return comm.allreduce(buf.data(), buf.data(), n, gradcomp::DType::kF32,
                                    gradcomp::ReduceOp::kSum);
            },
            &sec);
        if (!s.ok()) {
          fail("dense allreduce", s);
          break;
        }
        std::uint64_t wrong = 0;
        if (o.check) {
          buf = in;
          s = comm.allreduce(buf.data(), buf.data(), n, gradcomp::DType::kF32,
                             gradcomp::ReduceOp::kSum);
          if (!s.ok()) {
            fail("dense allreduce check", s);
            break;
          }
          for (std::uint64_t i = 0; i < n; ++i) {
            float want = 0;  // exact: small multiples of 1/64
            for (std::uint32_t r = 0; r < p; ++r) want += fill(r, i);
            if (buf[i] != want) ++wrong;
          }
          wrong = sum_u64(wrong);
        }
        Row row{"dense",
                o.backend == "nccl" ? "nccl-allreduce" : "mpi-allreduce",
                n,
                4 * n,
                static_cast<std::uint64_t>(dense_wire),
                sec * 1e6,
                4.0 * static_cast<double>(n) / sec / 1e9,
                0,
                1.0,
                wrong};
        row.busbw = row.algbw * bus;
        rows.push_back(row);
      }

      for (const std::string& spec : o.compressors) {
        const std::string full =
            spec + (spec.find(':') == std::string::npos ? ":" : ",") + "n=" + std::to_string(n);
        gradcomp::Result<CompressorDesc> desc = gradcomp::parse_compressor(full);
        if (!desc.ok()) {
          fail(full, desc.status());
          break;
        }
        gradcomp::Result<const CompressorImpl*> impl = gradcomp::select_impl(*desc, o.impl);
        if (!impl.ok()) {
          fail(full, impl.status());
          break;
        }
        const gradcomp::CompressorOps ops = (*impl)->ops(desc->kind);
        const std::uint64_t payload = ops.payload_bytes ? ops.payload_bytes(*desc) : 4 * n;
        gradcomp::coll::Reduction red = gradcomp::coll::Reduction::kMean;
        if (o.algorithm == "auto" && desc->kind == gradcomp::CompressorKind::kSign)
          red = gradcomp::coll::Reduction::kMajority;
        else if (o.algorithm == "auto" && (desc->kind == gradcomp::CompressorKind::kBlockSign ||
                                           desc->kind == gradcomp::CompressorKind::kQsgd ||
                                           desc->kind == gradcomp::CompressorKind::kTernGrad))
          red = gradcomp::coll::Reduction::kTwoWay;
        else if (o.algorithm == "majority")
          red = gradcomp::coll::Reduction::kMajority;
        else if (o.algorithm == "two-phase")
          red = gradcomp::coll::Reduction::kTwoWay;
        gradcomp::Result<Algorithm> alg =
            gradcomp::coll::resolve_algorithm(o.algorithm, *desc, payload, p, red);
        if (!alg.ok()) {
          fail(full, alg.status());
          break;
        }
        gradcomp::coll::CollectiveOptions copt;
        copt.mode = o.mode;
        const gradcomp::ChunkRange mine = gradcomp::chunk_bounds(n, p)[rank];
        std::vector<float> server(mine.size(), 0.0f);
        gradcomp::CompressContext ctx;
        ctx.rank = rank;
        gradcomp::coll::CollStats stats;
        auto call = [&](gradcomp::coll::CollStats* st) {
          if (*alg == Algorithm::kTwoPhase)
            return gradcomp::coll::two_phase_allreduce(comm, **impl, *desc, *desc, ctx, in, server,
                                                       1.0, out, Span<float>(), copt, st);
          return gradcomp::coll::compressed_allreduce(comm, *alg, **impl, *desc, ctx, in, out, copt,
                                                      st);
        };
        double sec = 0;
        Status s = time_op(
            comm, o, [&] { return call(nullptr); }, &sec);
        if (!s.ok()) {
          fail(full, s);
          break;
        }
        std::uint64_t wrong = 0;
        if (o.check) {
          // Separate check iteration from a zero server memory, against the reference.
          std::fill(server.begin(), server.end(), 0.0f);
          s = call(&stats);
          if (!s.ok()) {
            fail(full + " check", s);
            break;
          }
          std::vector<std::vector<float>> all(p, std::vector<float>(n));
          for (std::uint32_t r = 0; r < p; ++r)
            for (std::uint64_t i = 0; i < n; ++i) all[r][i] = fill(r, i);
          gradcomp::Result<std::vector<float>> want = Status();
          std::vector<float> server_full(n, 0.0f);
          switch (*alg) {
            case Algorithm::kDense: want = gradcomp::ref::coll_dense_mean(all); break;
            case Algorithm::kMajority:
              want = gradcomp::ref::coll_majority(*desc, 0, 0, all, false);
              break;
            case Algorithm::kTwoPhase:
              want = gradcomp::ref::coll_two_phase(*desc, *desc, 0, all, server_full, 1.0);
              break;
            default: want = gradcomp::ref::coll_compressed_mean(*desc, 0, 0, all); break;
          }
          if (!want.ok()) {
            fail(full + " oracle", want.status());
            break;
          }
          double scale = 1.0;
          for (float v : *want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
          const bool exact =
              o.mode == gradcomp::coll::ReductionMode::kDeterministic && (*impl)->is_reference;
          const double tol = exact ? 0.0 : 4.0 * p * 1.2e-7 * scale * 64.0;
          for (std::uint64_t i = 0; i < n; ++i)
            if (!(std::fabs(static_cast<double>(out[i]) - (*want)[i]) <= tol)) ++wrong;
          // Two-phase in fast mode may flip a server sign within rounding of 0
          // (docs/collectives.md).
          if (!exact && *alg == Algorithm::kTwoPhase && wrong <= n / 100) wrong = 0;
          wrong = sum_u64(wrong);
        } else {
          s = call(&stats);
          if (!s.ok()) {
            fail(full, s);
            break;
          }
        }
        const std::uint64_t wire = max_u64(stats.bytes_sent + stats.bytes_received);
        Row row{spec,
                gradcomp::coll::algorithm_name(*alg),
                n,
                4 * n,
                wire,
                sec * 1e6,
                4.0 * static_cast<double>(n) / sec / 1e9,
                0,
                wire ? dense_wire / static_cast<double>(wire) : 0.0,
                wrong};
        row.busbw = row.algbw * bus;
        rows.push_back(row);
      }
      if (root) {
        for (const Row& r : rows) {
          if (r.count != n) continue;
          std::printf("%12llu %10llu %-28s %-15s %10.1f %9.3f %9.3f %12llu %8.2f %7llu\n",
                      static_cast<unsigned long long>(r.bytes),
                      static_cast<unsigned long long>(r.count), r.compressor.c_str(),
                      r.algorithm.c_str(), r.time_us, r.algbw, r.busbw,
                      static_cast<unsigned long long>(r.wire), r.ratio,
                      static_cast<unsigned long long>(r.wrong));
        }
        std::fflush(stdout);
      }
    }
    std::uint64_t total_wrong = 0;
    for (const Row& r : rows) total_wrong += r.wrong;
    if (root)
      std::printf("# Out of bounds values : %llu %s\n",
                  static_cast<unsigned long long>(total_wrong), total_wrong ? "FAILED" : "OK");
    if (total_wrong && rc == 0) rc = 3;
    if (root && !o.json.empty() && rc != 1) {
      char host[256] = {0};
      gethostname(host, sizeof host - 1);
      char date[64];
      const std::time_t now = std::time(nullptr);
      std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
      std::string sha = shell_line("git -C " GRADCOMP_SOURCE_DIR " rev-parse HEAD 2>/dev/null");
      if (sha.empty()) sha = "unknown";
      std::ofstream js(o.json);
      js << "{\n  \"context\": {\"tool\": \"gradcomp-coll-perf\", \"backend\": \"" << comm.backend()
         << "\", \"ranks\": " << p << ", \"device\": \"" << json_escape(cpu_model())
         << "\", \"hostname\": \"" << json_escape(host) << "\", \"git_sha\": \"" << sha
         << "\", \"date\": \"" << date << "\", \"mode\": \""
         << (o.mode == gradcomp::coll::ReductionMode::kFast ? "fast" : "deterministic")
         << "\", \"iters\": " << o.iters << ", \"warmup\": " << o.warmup << "},\n  \"results\": [";
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "%s\n    {\"compressor\": \"%s\", \"algorithm\": \"%s\", \"count\": %llu, "
                      "\"bytes\": %llu, \"time_us\": %.3f, \"algbw_GBps\": %.6f, \"busbw_GBps\": "
                      "%.6f, \"wire_bytes\": %llu, \"ratio\": %.6f, \"wrong\": %llu}",
                      i ? "," : "", json_escape(r.compressor).c_str(), r.algorithm.c_str(),
                      static_cast<unsigned long long>(r.count),
                      static_cast<unsigned long long>(r.bytes), r.time_us, r.algbw, r.busbw,
                      static_cast<unsigned long long>(r.wire), r.ratio,
                      static_cast<unsigned long long>(r.wrong));
        js << buf;
      }
      js << "\n  ]\n}\n";
      if (!js) {
        std::fprintf(stderr, "gradcomp-coll-perf: cannot write %s\n", o.json.c_str());
        rc = 1;
      }
    }
    int any = rc;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    rc = any;
  }
  MPI_Finalize();
  return rc;
}
