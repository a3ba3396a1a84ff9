// gradcomp-cuda-bench: cuda:native kernel throughput on device buffers, timed with CUDA events,
// as a fraction of the device copy bandwidth measured in the same run (cudaMemcpyAsync
// device-to-device of the same 4n bytes). One JSON object per line on stdout; with --json=FILE
// also one JSON document (context + results) that reports/make_report.py reads (GPU rows).
//
//   gradcomp-cuda-bench [--n=N] [--reps=R] [--json=FILE] [case ...]   (default n = 2^26, R = 20)
//
// Bytes-touched model (docs/cuda.md): compress = 4n read + payload written; decompress-
// accumulate = payload read + 4n read + 4n written; copy = 4n read + 4n written. Compressors
// that read their input twice (blocksign/qsgd scales, topk's sort) therefore show less than
// 100% even when they run at memory speed: the model counts the minimum traffic.
// Exits 77 ("no CUDA device: skipping") without a device.
#include <cuda_runtime.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "gradcomp/kernels/cuda.hpp"

namespace {

#define BENCH_CU(x)                                                 \
  do {                                                              \
    const cudaError_t e_ = (x);                                     \
    if (e_ != cudaSuccess) {                                        \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                 \
    }                                                               \
  } while (0)

template <class F>
double time_ms(cudaStream_t s, int reps, F&& f) {
  cudaEvent_t a, b;
  BENCH_CU(cudaEventCreate(&a));
  BENCH_CU(cudaEventCreate(&b));
  f();  // warm-up (first-touch, pool growth)
  BENCH_CU(cudaStreamSynchronize(s));
  BENCH_CU(cudaEventRecord(a, s));
  for (int r = 0; r < reps; ++r) f();
  BENCH_CU(cudaEventRecord(b, s));
  BENCH_CU(cudaEventSynchronize(b));
  float ms = 0.0f;
  BENCH_CU(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return static_cast<double>(ms) / reps;
}

// First line of a shell command's output ("" on failure).
std::string shell_line(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[256];
    if (std::fgets(buf, sizeof buf, f)) out = buf;
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (const char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace gradcomp;
  std::uint64_t n = std::uint64_t{1} << 26;
  int reps = 20;
  std::string json_path;
  std::vector<std::string> cases;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--n=", 0) == 0) {
      n = std::strtoull(a.c_str() + 4, nullptr, 10);
    } else if (a.rfind("--reps=", 0) == 0) {
      reps = std::atoi(a.c_str() + 7);
    } else if (a.rfind("--json=", 0) == 0) {
      json_path = a.substr(7);
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr,
                   "usage: gradcomp-cuda-bench [--n=N] [--reps=R] [--json=FILE] [case ...]\n");
      return 2;
    } else {
      cases.push_back(a);
    }
  }
  if (reps < 1 || n == 0) {
    std::fprintf(stderr, "gradcomp-cuda-bench: --n and --reps must be positive\n");
    return 2;
  }
  if (cases.empty()) {
    cases = {"identity",
             "fp16",
             "bf16",
             "sign",
             "blocksign",
             "blocksign:block=256",
             "qsgd",
             "topk:density=0.001",
             "threshold:tau=1.5",
             "randk:density=0.001"};
  }
  const cuda::DeviceStatus& dev = cuda::device_status();
  if (!dev.available) {
    std::printf("no CUDA device: skipping (%s)\n", dev.reason.c_str());
    return 77;
  }
  cudaStream_t s;
  BENCH_CU(cudaStreamCreate(&s));
  float *in = nullptr, *out = nullptr;
  BENCH_CU(cudaMalloc(&in, 4 * n));
  BENCH_CU(cudaMalloc(&out, 4 * n));
  // Quarters in [-1.75, 1.75] with a non-trivial pattern (host fill, one copy).
  std::vector<float> h(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    h[i] = static_cast<float>(static_cast<int>((i * 2654435761u >> 7) % 15u) - 7) * 0.25f;
  }
  BENCH_CU(cudaMemcpy(in, h.data(), 4 * n, cudaMemcpyHostToDevice));
  const double copy_ms = time_ms(
      s, reps, [&] { BENCH_CU(cudaMemcpyAsync(out, in, 4 * n, cudaMemcpyDeviceToDevice, s)); });
  const double copy_gbps = 8.0 * static_cast<double>(n) / (copy_ms * 1e6);
  std::printf(
      "{\"bench\": \"copy\", \"device\": \"%s\", \"n\": %llu, \"ms\": %.4f, \"GBps\": %.1f}\n",
      dev.name.c_str(), static_cast<unsigned long long>(n), copy_ms, copy_gbps);
  int failures = 0;
  std::vector<std::string> rows;  // the results of --json, one object each
  for (const std::string& c : cases) {
    const std::string text =
        c + (c.find(':') == std::string::npos ? ":" : ",") + "n=" + std::to_string(n);
    auto d = parse_compressor(text);
    if (!d.ok() || !cuda::implements(d.value())) {
      std::fprintf(stderr, "%s: %s\n", text.c_str(),
                   d.ok() ? "not implemented on CUDA" : d.status().to_string().c_str());
      ++failures;
      continue;
    }
    const CompressorDesc desc = d.value();
    const std::uint64_t cap = cuda::payload_bytes(desc);
    std::uint8_t* p = nullptr;
    BENCH_CU(cudaMalloc(&p, cap));
    CompressContext ctx;
    std::uint64_t size = 0;
    Status st;
    const double c_ms =
        time_ms(s, reps, [&] { st = cuda::compress(desc, ctx, in, p, cap, &size, s); });
    if (!st.ok()) {
      std::fprintf(stderr, "%s: %s\n", text.c_str(), st.to_string().c_str());
      ++failures;
      cudaFree(p);
      continue;
    }
    const double a_ms = time_ms(
        s, reps, [&] { st = cuda::decompress_accumulate(desc, ctx, p, size, 0.5f, out, s); });
    if (!st.ok()) ++failures;
    const double c_bytes = 4.0 * static_cast<double>(n) + static_cast<double>(size);
    const double a_bytes = 8.0 * static_cast<double>(n) + static_cast<double>(size);
    const double c_gbps = c_bytes / (c_ms * 1e6), a_gbps = a_bytes / (a_ms * 1e6);
    char row[1024];
    std::snprintf(
        row, sizeof row,
        "{\"bench\": \"%s\", \"impl\": \"cuda:native\", \"n\": %llu, \"payload_bytes\": %llu, "
        "\"compress_ms\": %.4f, \"compress_GBps\": %.1f, \"compress_frac_copy_bw\": %.3f, "
        "\"accumulate_ms\": %.4f, \"accumulate_GBps\": %.1f, \"accumulate_frac_copy_bw\": %.3f}",
        desc.to_string().c_str(), static_cast<unsigned long long>(n),
        static_cast<unsigned long long>(size), c_ms, c_gbps, c_gbps / copy_gbps, a_ms, a_gbps,
        a_gbps / copy_gbps);
    std::printf("%s\n", row);
    rows.push_back(row);
    cudaFree(p);
  }
  cudaFree(in);
  cudaFree(out);
  cudaStreamDestroy(s);
  if (!json_path.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    char date[64];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    const std::string sha = shell_line("git -C " GRADCOMP_SOURCE_DIR " rev-parse HEAD 2>/dev/null");
    std::ofstream js(json_path);
    js << "{\n  \"context\": {\"tool\": \"gradcomp-cuda-bench\", \"device\": \""
       << json_escape(dev.name) << "\", \"hostname\": \"" << json_escape(host)
       << "\", \"git_sha\": \"" << (sha.empty() ? "unknown" : sha) << "\", \"date\": \"" << date
       << "\", \"n\": " << n << ", \"reps\": " << reps << ", \"copy_GBps\": " << copy_gbps
       << "},\n  \"results\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) js << (i ? ",\n    " : "\n    ") << rows[i];
    js << "\n  ]\n}\n";
    if (!js) {
      std::fprintf(stderr, "gradcomp-cuda-bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  return failures == 0 ? 0 : 1;
}
