// gradcomp-bench: kernel throughput of every compressor x every implementation that can run it
// (style.md B6). One generic driver: the cases come from bench/cases/perf_<c>_<label> files, the
// implementations from the registry, so a new compressor or backend needs no benchmark code.
//
// Benchmarks, run in registration order:
//   stream/copy/n=N, stream/triad/n=N   the memory roof, measured in this run on one thread
//   <case string>/<impl>/<op>           op = compress | decompress | decompress_accumulate
//                                       | fused_ef (error-feedback worker step, kk + ref only)
// Each case is validated once against ref:any before timing (byte-exact payload, bit-exact
// decoded and accumulated values; fused_ef: payload, momentum and error bit-exact against
// kk::fused_ef_reference_step); a mismatch is SkipWithError and never reports a speed.
// The bytes-touched model behind touched_GBps and frac_copy_bw is in docs/metrics.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/kernels/registry.hpp"

#if GRADCOMP_HAVE_KOKKOS
#include <Kokkos_Core.hpp>

#include "gradcomp/kernels/fused_ef.hpp"
#include "gradcomp/kernels/fused_ef_reference.hpp"
#include "kokkos/kk_ops.hpp"
#endif

#ifndef GRADCOMP_BENCH_CASES_DIR
#define GRADCOMP_BENCH_CASES_DIR "bench/cases"
#endif
#ifndef GRADCOMP_SOURCE_DIR
#define GRADCOMP_SOURCE_DIR "."
#endif
#ifndef GRADCOMP_BUILD_TYPE
#define GRADCOMP_BUILD_TYPE "unknown"
#endif

namespace gradcomp::bench {
namespace {

using Clock = std::chrono::steady_clock;

enum class Op { kCompress, kDecompress, kAccumulate, kFusedEf };
const char* op_name(Op op) {
  switch (op) {
    case Op::kCompress: return "compress";
    case Op::kDecompress: return "decompress";
    case Op::kAccumulate: return "decompress_accumulate";
    case Op::kFusedEf: return "fused_ef";
  }
  return "?";
}

constexpr float kAlpha = 0.5f;

// Kokkos: fence before reading the clock so asynchronous backends are timed to completion.
void fence() {
#if GRADCOMP_HAVE_KOKKOS
  Kokkos::fence();
#endif
}

// ---- Input data: N(0,1) from a fixed xorshift + Box-Muller, shared by all cases of one n ----

const std::vector<float>& input_for(std::uint64_t n) {
  static std::map<std::uint64_t, std::unique_ptr<std::vector<float>>> cache;
  auto it = cache.find(n);
  if (it != cache.end()) return *it->second;
  // Keep one size alive at a time: 2^26 floats are 256 MiB.
  cache.clear();
  auto v = std::make_unique<std::vector<float>>(n);
  std::uint64_t s = 0x9E3779B97F4A7C15ull ^ n;
  auto next = [&s]() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (static_cast<double>(s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  };
  for (std::uint64_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(next()));
    const double t = 6.283185307179586 * next();
    (*v)[i] = static_cast<float>(r * std::cos(t));
    if (i + 1 < n) (*v)[i + 1] = static_cast<float>(r * std::sin(t));
  }
  return *cache.emplace(n, std::move(v)).first->second;
}

// ---- The memory roof: STREAM copy and triad (and memcpy for reference) per n ----

std::map<std::uint64_t, double>& copy_gbps_by_n() {
  static std::map<std::uint64_t, double> m;
  return m;
}

// A plain store loop, as in STREAM: GCC would otherwise turn it into memcpy, whose non-temporal
// stores skip the write-allocate read that every kernel's ordinary stores pay, and the roof
// would not be one a Kokkos kernel can reach. stream/memcpy reports that figure separately.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
void stream_copy_kernel(const float* __restrict a, float* __restrict b, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) b[i] = a[i];
}
void stream_memcpy_kernel(const float* a, float* b, std::uint64_t n) {
  std::memcpy(b, a, n * sizeof(float));
}
void stream_triad_kernel(float* __restrict a, const float* __restrict b, const float* __restrict c,
                         float s, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

// Copy bandwidth for frac_copy_bw: the stream/copy benchmark of this run at the same n, or a
// quick best-of-5 measurement when that benchmark was filtered out.
double copy_gbps(std::uint64_t n) {
  auto& m = copy_gbps_by_n();
  auto it = m.find(n);
  if (it != m.end()) return it->second;
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    stream_copy_kernel(a.data(), b.data(), n);
    benchmark::ClobberMemory();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 8.0 * static_cast<double>(n) / dt / 1e9);
  }
  m[n] = best;
  return best;
}

enum class Stream { kCopy, kMemcpy, kTriad };

void bm_stream(benchmark::State& st, std::uint64_t n, Stream kind) {
  std::vector<float> a(n, 1.0f), b(n, 2.0f), c(kind == Stream::kTriad ? n : 0, 0.5f);
  const bool triad = kind == Stream::kTriad;
  const double bytes = (triad ? 12.0 : 8.0) * static_cast<double>(n);
  double best = 0, total = 0;
  for (auto _ : st) {
    const auto t0 = Clock::now();
    switch (kind) {
      case Stream::kCopy: stream_copy_kernel(a.data(), b.data(), n); break;
      case Stream::kMemcpy: stream_memcpy_kernel(a.data(), b.data(), n); break;
      case Stream::kTriad: stream_triad_kernel(a.data(), b.data(), c.data(), 3.0f, n); break;
    }
    benchmark::DoNotOptimize(a.data());
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    st.SetIterationTime(dt);
    total += dt;
    best = std::max(best, bytes / dt / 1e9);
  }
  const double mean_gbps = bytes * static_cast<double>(st.iterations()) / total / 1e9;
  st.counters["GBps"] = mean_gbps;
  st.counters["best_GBps"] = best;
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(bytes));
  if (kind == Stream::kCopy) {
    // Mean against mean: kernels report mean times too. Best repetition of this run.
    auto& m = copy_gbps_by_n();
    m[n] = std::max(m.count(n) ? m[n] : 0.0, mean_gbps);
  }
}

// ---- Bytes-touched model (docs/metrics.md): the minimum DRAM traffic of one call ----

// fused_ef: momentum and error each add a read and a write of 4n (the bench always runs with
// both; the flags keep the model honest if that setting changes).
double touched_bytes(Op op, std::uint64_t n, std::uint64_t payload, bool momentum = true,
                     bool error_feedback = true) {
  const double in = 4.0 * static_cast<double>(n), p = static_cast<double>(payload);
  switch (op) {
    case Op::kCompress: return in + p;        // read the input, write the payload
    case Op::kDecompress: return p + in;      // read the payload, write the output
    case Op::kAccumulate: return p + 2 * in;  // read the payload, read + write the output
    case Op::kFusedEf:                        // read g, read + write m and e, write the payload
      return in + (momentum ? 2 * in : 0.0) + (error_feedback ? 2 * in : 0.0) + p;
  }
  return in;
}

// ---- Validation against ref:any, once per (case, impl) ----

const CompressorImpl& ref_impl() { return compressor_impls().back(); }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Empty string: valid. Otherwise why not.
std::string validate_impl(const CompressorDesc& desc, const CompressorImpl& impl,
                          const CompressContext& ctx) {
  const auto& in = input_for(desc.n);
  const CompressorOps ro = ref_impl().ops(desc.kind);
  const CompressorOps io = impl.ops(desc.kind);
  std::vector<std::uint8_t> rp, ip;
  Status s = ro.compress(desc, ctx, Span<const float>(in), rp);
  if (!s.ok()) return "ref:any compress failed: " + s.message();
  s = io.compress(desc, ctx, Span<const float>(in), ip);
  if (!s.ok()) return impl.name + " compress failed: " + s.message();
  if (impl.is_reference) return "";
  if (io.payload_bytes(desc) != ro.payload_bytes(desc)) return "payload_bytes differs from ref";
  if (impl.deterministic && ip != rp) {
    std::size_t i = 0;
    while (i < std::min(ip.size(), rp.size()) && ip[i] == rp[i]) ++i;
    return "payload differs from ref:any (sizes " + std::to_string(ip.size()) + " vs " +
           std::to_string(rp.size()) + ", first differing byte " + std::to_string(i) + ")";
  }
  std::vector<float> rd(desc.n), id(desc.n, -1.0f);
  if (!(s = ro.decompress(desc, ctx, Span<const std::uint8_t>(rp), Span<float>(rd))).ok())
    return "ref:any decompress failed: " + s.message();
  if (!(s = io.decompress(desc, ctx, Span<const std::uint8_t>(rp), Span<float>(id))).ok())
    return impl.name + " decompress of the ref payload failed: " + s.message();
  if (!same_bits(rd, id)) return "decompress of the ref payload differs from ref:any";
  // The reference must also read this implementation's payload.
  if (!(s = ro.decompress(desc, ctx, Span<const std::uint8_t>(ip), Span<float>(id))).ok())
    return "ref:any cannot decompress the " + impl.name + " payload: " + s.message();
  std::vector<float> ra(in), ia(in);
  if (!(s = ro.decompress_accumulate(desc, ctx, Span<const std::uint8_t>(rp), kAlpha,
                                     Span<float>(ra)))
           .ok())
    return "ref:any decompress_accumulate failed: " + s.message();
  if (!(s = io.decompress_accumulate(desc, ctx, Span<const std::uint8_t>(rp), kAlpha,
                                     Span<float>(ia)))
           .ok())
    return impl.name + " decompress_accumulate failed: " + s.message();
  if (!same_bits(ra, ia)) return "decompress_accumulate differs from ref:any";
  return "";
}

const std::string& validation_for(const CompressorDesc& desc, const CompressorImpl& impl,
                                  const CompressContext& ctx) {
  static std::map<std::string, std::string> done;
  const std::string key = desc.to_string() + "/" + impl.name;
  auto it = done.find(key);
  if (it == done.end()) it = done.emplace(key, validate_impl(desc, impl, ctx)).first;
  return it->second;
}

// Mean ref:any seconds per call, per "<case>/<op>", for speedup_vs_ref (ref runs first).
std::map<std::string, std::pair<double, double>>& ref_seconds() {
  static std::map<std::string, std::pair<double, double>> m;  // (sum of means, repetitions)
  return m;
}

void report(benchmark::State& st, const CompressorDesc& desc, const CompressorImpl& impl, Op op,
            double total, std::size_t payload_size, double touched);

void bm_op(benchmark::State& st, CompressorDesc desc, const CompressorImpl* impl, Op op) {
  CompressContext ctx;
  ctx.step = 1;
  const std::string& why = validation_for(desc, *impl, ctx);
  if (!why.empty()) {
    st.SkipWithError(why.c_str());
    return;
  }
  const auto& in = input_for(desc.n);
  const CompressorOps ops = impl->ops(desc.kind);
  std::vector<std::uint8_t> payload;
  // Two untimed calls: an implementation may ping-pong the caller's payload vector with a
  // scratch buffer, and the first calls then pay for allocation, zero-fill and page faults.
  Status s = ops.compress(desc, ctx, Span<const float>(in), payload);
  if (s.ok()) s = ops.compress(desc, ctx, Span<const float>(in), payload);
  if (s.ok() && op == Op::kCompress) s = ops.compress(desc, ctx, Span<const float>(in), payload);
  std::vector<float> out;
  if (op != Op::kCompress) out = in;
  double total = 0;
  for (auto _ : st) {
    fence();
    const auto t0 = Clock::now();
    switch (op) {
      case Op::kCompress: s = ops.compress(desc, ctx, Span<const float>(in), payload); break;
      case Op::kDecompress:
        s = ops.decompress(desc, ctx, Span<const std::uint8_t>(payload), Span<float>(out));
        break;
      case Op::kAccumulate:
        s = ops.decompress_accumulate(desc, ctx, Span<const std::uint8_t>(payload), kAlpha,
                                      Span<float>(out));
        break;
      case Op::kFusedEf:  // registered with bm_fused_ef, never here
        s = make_status(StatusCode::kInvalidArgument, "fused_ef is not a bm_op op");
        break;
    }
    fence();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    st.SetIterationTime(dt);
    total += dt;
    if (!s.ok()) {
      st.SkipWithError(s.message().c_str());
      return;
    }
  }
  report(st, desc, *impl, op, total, payload.size(), touched_bytes(op, desc.n, payload.size()));
  st.SetLabel(impl->name);
}

// The counters every kernel benchmark reports (docs/metrics.md); total: timed seconds.
void report(benchmark::State& st, const CompressorDesc& desc, const CompressorImpl& impl, Op op,
            double total, std::size_t payload_size, double touched) {
  const double iters = static_cast<double>(st.iterations());
  const double mean = total / std::max(iters, 1.0);
  const double in_bytes = 4.0 * static_cast<double>(desc.n);
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(in_bytes));
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(desc.n));
  st.counters["FOM: GB/s"] = in_bytes / mean / 1e9;
  st.counters["input_GBps"] = in_bytes / mean / 1e9;
  st.counters["touched_GBps"] = touched / mean / 1e9;
  st.counters["payload_B"] = static_cast<double>(payload_size);
  st.counters["ratio"] = payload_size == 0 ? 0.0 : in_bytes / static_cast<double>(payload_size);
  const double roof = copy_gbps(desc.n);
  st.counters["copy_GBps"] = roof;
  st.counters["frac_copy_bw"] = touched / mean / 1e9 / roof;
  const std::string key = desc.to_string() + "/" + op_name(op);
  if (impl.is_reference) {
    auto& r = ref_seconds()[key];
    r.first += mean;
    r.second += 1;
  } else {
    auto it = ref_seconds().find(key);
    if (it != ref_seconds().end())
      st.counters["speedup_vs_ref"] = it->second.first / it->second.second / mean;
  }
}

// ---- fused_ef: the error-feedback worker step, kk::fused_ef_compress vs its unfused oracle ----

#if GRADCOMP_HAVE_KOKKOS
// One fixed, documented setting (docs/metrics.md): heavy-ball momentum 0.9, lr 0.1 applied
// inside (before compression), error feedback on. Also in the JSON: the label and the
// momentum / lr / error_feedback counters.
constexpr double kFusedMomentum = 0.9, kFusedLr = 0.1;
constexpr const char* kFusedSetting = "heavy_ball mu=0.9, lr inside=0.1, ef on";

kk::FusedEfParams fused_params() {
  kk::FusedEfParams pa;
  pa.momentum_form = MomentumForm::kHeavyBall;
  pa.momentum = kFusedMomentum;
  pa.lr_placement = LrPlacement::kInside;
  pa.lr = kFusedLr;
  pa.error_feedback = true;
  return pa;
}

// The step runs on kk's Kokkos space (kk:<space>) and, as the oracle, on ref:any; other
// implementations have no fused step.
bool fused_runs(const CompressorDesc& desc, const CompressorImpl& impl) {
  return kk::fused_ef_supports(desc) && (impl.is_reference || impl.name.rfind("kk:", 0) == 0);
}

// The state every validated and timed step starts from: nonzero momentum and error, so a
// wrong read of m or e changes the result and validation sees it.
struct FusedState {
  std::vector<float> m, e;
};
FusedState fused_state(std::uint64_t n) {
  const auto& g = input_for(n);
  FusedState s{std::vector<float>(n), std::vector<float>(n)};
  for (std::uint64_t i = 0; i < n; ++i) {
    s.m[i] = 0.5f * g[n - 1 - i];
    s.e[i] = 0.05f * g[(i + n / 2) % n];
  }
  return s;
}

Status fused_step(const CompressorDesc& desc, const CompressorImpl& impl,
                  const CompressContext& ctx, const std::vector<float>& g, std::vector<float>& m,
                  std::vector<float>& e, std::vector<std::uint8_t>& payload) {
  if (impl.is_reference)
    return kk::fused_ef_reference_step(desc, ctx, fused_params(), g, m, e, payload);
  return kk::fused_ef_compress(desc, ctx, fused_params(), Span<const float>(g), Span<float>(m),
                               Span<float>(e), payload);
}

// Empty string: the step of impl equals the oracle bit for bit (payload, momentum, error).
std::string validate_fused(const CompressorDesc& desc, const CompressorImpl& impl,
                           const CompressContext& ctx) {
  const auto& g = input_for(desc.n);
  FusedState r = fused_state(desc.n);
  std::vector<std::uint8_t> rp, ip;
  Status s = kk::fused_ef_reference_step(desc, ctx, fused_params(), g, r.m, r.e, rp);
  if (!s.ok()) return "ref:any fused_ef failed: " + s.message();
  if (impl.is_reference) return "";
  FusedState k = fused_state(desc.n);
  s = fused_step(desc, impl, ctx, g, k.m, k.e, ip);
  if (!s.ok()) return impl.name + " fused_ef failed: " + s.message();
  if (ip != rp) {
    std::size_t i = 0;
    while (i < std::min(ip.size(), rp.size()) && ip[i] == rp[i]) ++i;
    return "fused_ef payload differs from ref:any (sizes " + std::to_string(ip.size()) + " vs " +
           std::to_string(rp.size()) + ", first differing byte " + std::to_string(i) + ")";
  }
  if (!same_bits(k.m, r.m)) return "fused_ef momentum differs from ref:any";
  if (!same_bits(k.e, r.e)) return "fused_ef error differs from ref:any";
  return "";
}

void bm_fused_ef(benchmark::State& st, CompressorDesc desc, const CompressorImpl* impl) {
  CompressContext ctx;
  ctx.step = 1;
  static std::map<std::string, std::string> done;
  const std::string vkey = desc.to_string() + "/" + impl->name;
  auto vit = done.find(vkey);
  if (vit == done.end()) vit = done.emplace(vkey, validate_fused(desc, *impl, ctx)).first;
  if (!vit->second.empty()) {
    st.SkipWithError(vit->second.c_str());
    return;
  }
  const auto& g = input_for(desc.n);
  const FusedState s0 = fused_state(desc.n);
  std::vector<float> m = s0.m, e = s0.e;
  std::vector<std::uint8_t> payload;
  // Two untimed steps, as for compress: first-call allocation and page faults stay out.
  Status s = fused_step(desc, *impl, ctx, g, m, e, payload);
  if (s.ok()) s = fused_step(desc, *impl, ctx, g, m, e, payload);
  if (!s.ok()) {
    st.SkipWithError(s.message().c_str());
    return;
  }
  const std::size_t bytes = desc.n * sizeof(float);
  double total = 0;
  for (auto _ : st) {
    // m and e are updated in place: restore the validated state outside the timed region, so
    // every timed step is the same step (hot cache for small n, as for the other ops).
    std::memcpy(m.data(), s0.m.data(), bytes);
    std::memcpy(e.data(), s0.e.data(), bytes);
    fence();
    const auto t0 = Clock::now();
    s = fused_step(desc, *impl, ctx, g, m, e, payload);
    fence();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    st.SetIterationTime(dt);
    total += dt;
    if (!s.ok()) {
      st.SkipWithError(s.message().c_str());
      return;
    }
  }
  const kk::FusedEfParams pa = fused_params();
  report(st, desc, *impl, Op::kFusedEf, total, payload.size(),
         touched_bytes(Op::kFusedEf, desc.n, payload.size(),
                       pa.momentum_form != MomentumForm::kNone, pa.error_feedback));
  st.counters["momentum"] = pa.momentum;
  st.counters["lr"] = pa.lr;
  st.counters["error_feedback"] = pa.error_feedback ? 1.0 : 0.0;
  st.SetLabel(impl->name + " " + kFusedSetting);
}
#endif

// ---- Cases, sizes and options ----

struct Options {
  std::vector<std::uint64_t> sizes;
  std::string cases_dir = GRADCOMP_BENCH_CASES_DIR;
  std::set<std::string> impls;        // empty: all
  std::set<std::string> compressors;  // empty: all
  std::set<std::string> ops;          // empty: all
  bool ref = true;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

// "1024", "2^20", "16M", "4K" (binary suffixes, style.md B6 units).
bool parse_size(const std::string& t, std::uint64_t& n) {
  try {
    if (t.rfind("2^", 0) == 0) {
      const unsigned long e = std::stoul(t.substr(2));
      if (e > 40) return false;
      n = std::uint64_t{1} << e;
      return true;
    }
    std::size_t pos = 0;
    n = std::stoull(t, &pos);
    const std::string suf = t.substr(pos);
    if (suf == "K" || suf == "k")
      n <<= 10;
    else if (suf == "M")
      n <<= 20;
    else if (suf == "G")
      n <<= 30;
    else if (!suf.empty())
      return false;
    return true;
  } catch (...) {
    return false;
  }
}

// Largest divisor of n not above sqrt(n): the rows of the 2-D tensor `{matrix}` stands for.
std::string matrix_shape(std::uint64_t n) {
  std::uint64_t r = static_cast<std::uint64_t>(std::sqrt(static_cast<double>(n)));
  while (r > 1 && n % r != 0) --r;
  if (r == 0) r = 1;
  return std::to_string(r) + "x" + std::to_string(n / r);
}

struct CaseLine {
  std::string file;
  std::string text;  // case string without n; "{matrix}" -> a 2-D shape of n elements
};

std::vector<CaseLine> read_cases(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("perf_", 0) == 0) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<CaseLine> out;
  for (const auto& f : files) {
    std::ifstream is(f);
    std::string line;
    while (std::getline(is, line)) {
      const auto hash = line.find('#');
      if (hash != std::string::npos) line.resize(hash);
      line.erase(0, line.find_first_not_of(" \t"));
      line.erase(line.find_last_not_of(" \t\r") + 1);
      if (!line.empty()) out.push_back({std::filesystem::path(f).filename().string(), line});
    }
  }
  return out;
}

Result<CompressorDesc> case_for(const CaseLine& c, std::uint64_t n) {
  std::string text = c.text;
  const auto m = text.find("{matrix}");
  if (m != std::string::npos) text.replace(m, 8, matrix_shape(n));
  text += (text.find(':') == std::string::npos ? ":" : ",") + std::string("n=") + std::to_string(n);
  return parse_compressor(text);
}

// ---- Context (style.md B6): git sha + dirty flag, CPU, Kokkos, compiler, build type ----

std::string shell_line(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    std::array<char, 256> buf{};
    while (std::fgets(buf.data(), static_cast<int>(buf.size()), p) != nullptr) out += buf.data();
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string cpu_model() {
  std::ifstream is("/proc/cpuinfo");
  std::string line;
  while (std::getline(is, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto c = line.find(':');
      if (c != std::string::npos) return line.substr(line.find_first_not_of(" \t", c + 1));
    }
  }
  return "unknown";
}

void add_context() {
  const std::string git = "git -C '" + std::string(GRADCOMP_SOURCE_DIR) + "' ";
  const std::string sha = shell_line(git + "rev-parse HEAD 2>/dev/null");
  benchmark::AddCustomContext("git_sha", sha.empty() ? "unknown" : sha);
  const std::string dirty = shell_line(git + "status --porcelain 2>/dev/null | head -c 1");
  benchmark::AddCustomContext("git_dirty", sha.empty() ? "unknown" : (dirty.empty() ? "0" : "1"));
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("device", "host: " + cpu_model());
#if GRADCOMP_HAVE_KOKKOS
  benchmark::AddCustomContext("kokkos_version", std::to_string(KOKKOS_VERSION));
  benchmark::AddCustomContext("kokkos_backend", Kokkos::DefaultExecutionSpace::name());
  benchmark::AddCustomContext("kokkos_concurrency",
                              std::to_string(Kokkos::DefaultExecutionSpace().concurrency()));
#else
  benchmark::AddCustomContext("kokkos_version", "none");
#endif
  benchmark::AddCustomContext("compiler", std::string("g++/clang ") + __VERSION__);
  benchmark::AddCustomContext("build_type", GRADCOMP_BUILD_TYPE);
  benchmark::AddCustomContext("threads", "1");
  benchmark::AddCustomContext("cache", "hot");
  std::string impls;
  for (const auto& i : compressor_impls()) impls += (impls.empty() ? "" : ",") + i.name;
  benchmark::AddCustomContext("impls", impls);
  for (const char* v : {"OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES"})
    if (const char* e = std::getenv(v)) benchmark::AddCustomContext(v, e);
}

void usage() {
  std::cout
      << "usage: gradcomp-bench [--sizes=LIST] [--cases=DIR] [--impls=LIST] [--compressors=LIST]\n"
         "                      [--ops=LIST] [--no-stream] [Google Benchmark flags]\n"
         "  --sizes        element counts: 1024, 2^20, 16M (binary); default\n"
         "                 2^10,2^14,2^18,2^20,2^22,2^24,2^26\n"
         "  --cases        folder of perf_<c>_<label> case files (default " GRADCOMP_BENCH_CASES_DIR
         ")\n"
         "  --impls        e.g. kk:serial,ref:any (default: every impl that can run a case)\n"
         "  --compressors  e.g. topk,qsgd (default: all)\n"
         "  --ops          compress,decompress,decompress_accumulate,fused_ef (default: all;\n"
         "                 fused_ef: the fused error-feedback step, kk and ref:any only, for the\n"
         "                 compressors kk::fused_ef_supports)\n"
         "  --no-stream    skip the stream/copy and stream/triad benchmarks\n"
         "names: stream/{copy,triad,memcpy}/n=N and <case string>/<impl>/<op>\n";
}

}  // namespace
}  // namespace gradcomp::bench

int main(int argc, char** argv) {
  using namespace gradcomp;
  using namespace gradcomp::bench;
  Options opt;
  bool stream = true;
  std::vector<char*> rest{argv[0]};
  auto value = [](const std::string& a, const char* key, std::string& v) {
    const std::string k = std::string(key) + "=";
    if (a.rfind(k, 0) != 0) return false;
    v = a.substr(k.size());
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string v;
    if (a == "--help" || a == "-h") {
      usage();
      rest.push_back(argv[i]);
    } else if (value(a, "--sizes", v)) {
      for (const auto& t : split(v, ',')) {
        std::uint64_t n = 0;
        if (!parse_size(t, n) || n == 0) {
          std::cerr << "gradcomp-bench: bad size '" << t << "'\n";
          return 2;
        }
        opt.sizes.push_back(n);
      }
    } else if (value(a, "--cases", v)) {
      opt.cases_dir = v;
    } else if (value(a, "--impls", v)) {
      for (const auto& t : split(v, ',')) opt.impls.insert(t == "ref" ? "ref:any" : t);
    } else if (value(a, "--compressors", v)) {
      for (const auto& t : split(v, ',')) opt.compressors.insert(t);
    } else if (value(a, "--ops", v)) {
      for (const auto& t : split(v, ',')) {
        if (t != "compress" && t != "decompress" && t != "decompress_accumulate" &&
            t != "fused_ef") {
          std::cerr << "gradcomp-bench: unknown op '" << t << "'\n";
          return 2;
        }
        opt.ops.insert(t);
      }
    } else if (a == "--no-stream") {
      stream = false;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (opt.sizes.empty())
    for (unsigned e : {10u, 14u, 18u, 20u, 22u, 24u, 26u})
      opt.sizes.push_back(std::uint64_t{1} << e);

#if GRADCOMP_HAVE_KOKKOS
  kk::ensure_initialized();
#endif

  std::vector<CaseLine> cases;
  try {
    cases = read_cases(opt.cases_dir);
  } catch (const std::exception& e) {
    std::cerr << "gradcomp-bench: cannot read cases from " << opt.cases_dir << ": " << e.what()
              << "\n";
    return 2;
  }
  // Every compressor of the catalog needs a case file, so a run covers the whole library.
  std::set<std::string> covered;
  for (const auto& c : cases) covered.insert(c.text.substr(0, c.text.find(':')));
  for (const auto& info : compressor_catalog())
    if (!covered.count(info.name))
      std::cerr << "gradcomp-bench: warning: no case in " << opt.cases_dir << " for " << info.name
                << "\n";

  for (const auto n : opt.sizes) {
    if (stream) {
      for (auto [name, kind] :
           {std::pair{"copy", Stream::kCopy}, std::pair{"triad", Stream::kTriad},
            std::pair{"memcpy", Stream::kMemcpy}}) {
        benchmark::RegisterBenchmark(
            ("stream/" + std::string(name) + "/n=" + std::to_string(n)).c_str(), bm_stream, n, kind)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
    for (const auto& c : cases) {
      auto desc = case_for(c, n);
      if (!desc.ok()) {
        std::cerr << "gradcomp-bench: " << c.file << ": '" << c.text
                  << "': " << desc.status().message() << "\n";
        return 2;
      }
      const std::string cname = compressor_name(desc->kind);
      if (!opt.compressors.empty() && !opt.compressors.count(cname)) continue;
      // ref:any first so the others can report speedup_vs_ref.
      std::vector<const CompressorImpl*> impls{&ref_impl()};
      for (const auto& impl : compressor_impls())
        if (!impl.is_reference && impl.can_implement(*desc)) impls.push_back(&impl);
      for (const auto* impl : impls) {
        if (!opt.impls.empty() && !opt.impls.count(impl->name)) continue;
        for (Op op : {Op::kCompress, Op::kDecompress, Op::kAccumulate, Op::kFusedEf}) {
          if (!opt.ops.empty() && !opt.ops.count(op_name(op))) continue;
          const std::string name = desc->to_string() + "/" + impl->name + "/" + op_name(op);
          if (op == Op::kFusedEf) {
#if GRADCOMP_HAVE_KOKKOS
            if (fused_runs(*desc, *impl))
              benchmark::RegisterBenchmark(name.c_str(), bm_fused_ef, *desc, impl)
                  ->UseManualTime()
                  ->Unit(benchmark::kMicrosecond);
#endif
            continue;
          }
          benchmark::RegisterBenchmark(name.c_str(), bm_op, *desc, impl, op)
              ->UseManualTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }

  int bargc = static_cast<int>(rest.size());
  benchmark::Initialize(&bargc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, rest.data())) return 2;
  add_context();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
