// Host orchestration of the CUDA backend: argument and header checks, the kernels of
// cu_kernels.cu / cu_select.cu in order, one synchronisation to learn the Status, and the
// registry entry "cuda:native" (host spans: copy in, run, copy out).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/host_plans.hpp"
#include "cu_launch.hpp"
#include "gradcomp/kernels/cuda.hpp"
#include "gradcomp/rng.hpp"
#include "gradcomp/wire_format.hpp"

namespace gradcomp::cuda {
namespace {

using detail::ElemFmt;
using detail::Groups;
using detail::kNoIndex;

Status cuda_error(cudaError_t e, const char* what) {
  return make_status(StatusCode::kCudaError, "cuda: ", what, ": ", cudaGetErrorName(e), " (",
                     cudaGetErrorString(e), ")");
}
#define GC_CU(expr)                                            \
  do {                                                         \
    const cudaError_t gc_e_ = (expr);                          \
    if (gc_e_ != cudaSuccess) return cuda_error(gc_e_, #expr); \
  } while (0)

// Stream-ordered device allocation, freed on scope exit.
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p_) (void)cudaFreeAsync(p_, s_);
  }
  Status alloc(std::uint64_t bytes, cudaStream_t s) {
    s_ = s;
    GC_CU(cudaMallocAsync(&p_, bytes ? bytes : 1, s));
    return Status::success();
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  cudaStream_t s_ = nullptr;
};

// The "first bad position" slots (cu_launch.hpp) and their host copy.
struct Slots {
  DevBuf dev;
  unsigned long long host[detail::kSlots] = {};
  Status init(cudaStream_t s) {
    GRADCOMP_TRY(dev.alloc(sizeof(host), s));
    GC_CU(cudaMemsetAsync(dev.as<void>(), 0xff, sizeof(host), s));
    GC_CU(cudaMemsetAsync(dev.as<unsigned long long>() + detail::kSlotCount, 0,
                          sizeof(unsigned long long), s));
    return Status::success();
  }
  unsigned long long* d() const { return dev.as<unsigned long long>(); }
  Status read(cudaStream_t s) {
    GC_CU(cudaMemcpyAsync(host, d(), sizeof(host), cudaMemcpyDeviceToHost, s));
    GC_CU(cudaStreamSynchronize(s));
    return Status::success();
  }
  bool bad(int slot) const { return host[slot] != kNoIndex; }
};

Status read_input(const float* d_in, std::uint64_t i, cudaStream_t s, float* v) {
  GC_CU(cudaMemcpyAsync(v, d_in + i, sizeof(float), cudaMemcpyDeviceToHost, s));
  GC_CU(cudaStreamSynchronize(s));
  return Status::success();
}

Status nonfinite_input(const CompressorDesc& desc, const float* d_in, std::uint64_t i,
                       cudaStream_t s) {
  float v = 0.0f;
  GRADCOMP_TRY(read_input(d_in, i, s, &v));
  return make_status(StatusCode::kNonFinite, compressor_name(desc.kind), ": input[", i, "] = ", v,
                     " is not finite (nonfinite=error; use nonfinite=propagate to allow)");
}

template <class... Args>
Status corrupt(const CompressorDesc& desc, const Args&... args) {
  return make_status(StatusCode::kCorruptPayload, compressor_name(desc.kind), ": ", args...);
}

Status put_header(const CompressorDesc& desc, const CompressContext& ctx, std::uint8_t flags,
                  std::uint64_t count, std::uint64_t body_bytes, std::uint8_t* d_payload,
                  cudaStream_t s) {
  GRADCOMP_CHECK_ARG(body_bytes <= 0xFFFFFFFFull && count <= 0xFFFFFFFFull,
                     compressor_name(desc.kind), ": body of ", body_bytes, " bytes or count ",
                     count, " exceeds the 32-bit header fields");
  WireHeader h;
  h.compressor = static_cast<std::uint8_t>(desc.kind);
  h.flags = flags;
  h.n = desc.n;
  h.step = ctx.step;
  h.tensor_id = ctx.tensor_id;
  h.count = static_cast<std::uint32_t>(count);
  h.body_bytes = static_cast<std::uint32_t>(body_bytes);
  std::uint8_t bytes[kHeaderBytes];
  write_header(h, bytes);
  GC_CU(detail::write_header(bytes, d_payload, s));
  return Status::success();
}

// ---- groups (sign blocks, QSGD buckets) -----------------------------------------------------

// Fixed-size groups are described arithmetically (no per-block host vector); per-segment groups
// upload their offsets.
struct DevGroups {
  Groups g;
  DevBuf offsets;
};

Status make_groups(const CompressorDesc& desc, std::uint64_t fixed,
                   const std::vector<Segment>& segs, cudaStream_t s, DevGroups& out) {
  out.g.n = desc.n;
  if (fixed > 0) {
    out.g.fixed = fixed;
    out.g.count = (desc.n + fixed - 1) / fixed;
    out.g.max_size = std::min(fixed, desc.n);
    return Status::success();
  }
  std::vector<std::uint64_t> off(1, 0);
  std::uint64_t mx = 0;
  for (const Segment& seg : segs) {
    off.push_back(seg.offset + seg.size);
    mx = std::max(mx, seg.size);
  }
  out.g.count = segs.size();
  out.g.max_size = mx;
  GRADCOMP_TRY(out.offsets.alloc(8 * off.size(), s));
  GC_CU(cudaMemcpyAsync(out.offsets.as<void>(), off.data(), 8 * off.size(), cudaMemcpyHostToDevice,
                        s));
  out.g.offsets = out.offsets.as<std::uint64_t>();
  // The host vector dies at return: make sure the pageable copy has been consumed.
  GC_CU(cudaStreamSynchronize(s));
  return Status::success();
}

std::uint64_t sign_group_count(const CompressorDesc& desc) {
  if (desc.block > 0) return (desc.n + desc.block - 1) / desc.block;
  return desc.n == 0 ? 0 : tensor_segments(desc).size();
}
std::uint64_t qsgd_group_count(const CompressorDesc& desc) {
  if (desc.bucket > 0) return (desc.n + desc.bucket - 1) / desc.bucket;
  return desc.n == 0 ? 0 : tensor_segments(desc).size();
}
std::vector<Segment> segs_if(const CompressorDesc& desc, std::uint64_t fixed) {
  return fixed > 0 || desc.n == 0 ? std::vector<Segment>{} : tensor_segments(desc);
}

std::uint64_t blocksign_body(const CompressorDesc& desc) {
  return packed_bytes(desc.n, 1) +
         (desc.scale == SignScale::kNone ? 0 : 4 * sign_group_count(desc));
}
std::uint32_t qsgd_bits(const CompressorDesc& desc) { return 1 + qsgd_level_bits(desc.levels); }
std::uint64_t qsgd_body(const CompressorDesc& desc) {
  return packed_bytes(desc.n, qsgd_bits(desc)) + 4 * qsgd_group_count(desc);
}
bool sparse_dense(const CompressorDesc& desc, std::uint64_t k) { return desc.n > 0 && k >= desc.n; }

ElemFmt elem_fmt(CompressorKind k) {
  return k == CompressorKind::kFp16 ? ElemFmt::kF16
                                    : (k == CompressorKind::kBf16 ? ElemFmt::kBF16 : ElemFmt::kF32);
}
std::uint64_t elem_bytes(CompressorKind k) { return k == CompressorKind::kIdentity ? 4 : 2; }

// Random-k's index set: Floyd's draws on the device, the sequential collision resolution on the
// host with a bitmap (exactly the reference's random_k_indices), sorted by construction.
Status randk_index_set(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t k,
                       cudaStream_t s, std::vector<std::uint32_t>& idx) {
  const std::uint32_t who = desc.indices == IndexMode::kShared ? kSharedRank : ctx.rank;
  DevBuf draws;
  GRADCOMP_TRY(draws.alloc(8 * k, s));
  GC_CU(detail::randk_draws(desc.seed, ctx.step, ctx.tensor_id, who, desc.n, k,
                            draws.as<std::uint64_t>(), s));
  std::vector<std::uint64_t> t(k);
  GC_CU(cudaMemcpyAsync(t.data(), draws.as<void>(), 8 * k, cudaMemcpyDeviceToHost, s));
  GC_CU(cudaStreamSynchronize(s));
  std::vector<bool> chosen(desc.n, false);
  for (std::uint64_t i = 0; i < k; ++i) {
    const std::uint64_t j = desc.n - k + i;
    if (chosen[t[i]]) {
      chosen[j] = true;
    } else {
      chosen[t[i]] = true;
    }
  }
  idx.clear();
  idx.reserve(k);
  for (std::uint64_t j = 0; j < desc.n; ++j) {
    if (chosen[j]) idx.push_back(static_cast<std::uint32_t>(j));
  }
  return Status::success();
}

// ---- compositions (signtopk, qsgd_topk, qsgd_randk) and block sparsifiers (grbs, rbgs) ------

// The k selected values as one group (one norm / scale).
Groups single_group(std::uint64_t k) {
  Groups g;
  g.n = k;
  g.count = 1;
  g.fixed = k;
  g.max_size = k;
  return g;
}
bool composed_sends_indices(const CompressorDesc& desc) {
  return desc.kind != CompressorKind::kQsgdRandK || desc.indices == IndexMode::kPrivate;
}
// Body of the non-dense form: [k u32 indices] codes/sign bits, one f32 scale; empty for k = 0.
std::uint64_t composed_body(const CompressorDesc& desc, std::uint64_t k) {
  if (k == 0) return 0;
  const std::uint32_t bits = desc.kind == CompressorKind::kSignTopK ? 1 : qsgd_bits(desc);
  return (composed_sends_indices(desc) ? 4 * k : 0) + packed_bytes(k, bits) + 4;
}
detail::QsgdParams composed_qsgd(const CompressorDesc& desc, const CompressContext& ctx,
                                 const std::uint32_t* support) {
  detail::QsgdParams p;
  p.levels = desc.levels;
  p.bits = qsgd_bits(desc);
  p.seed = desc.seed;
  p.step = ctx.step;
  p.tensor_id = ctx.tensor_id;
  p.rank = ctx.rank;
  p.support = support;
  return p;
}
// Copies a host index list to a device buffer; synchronises because `idx` is pageable and may
// die right after.
Status upload_indices(const std::vector<std::uint32_t>& idx, cudaStream_t s, DevBuf& buf) {
  GRADCOMP_TRY(buf.alloc(4 * idx.size(), s));
  GC_CU(cudaMemcpyAsync(buf.as<void>(), idx.data(), 4 * idx.size(), cudaMemcpyHostToDevice, s));
  GC_CU(cudaStreamSynchronize(s));
  return Status::success();
}

// ---- dgc -------------------------------------------------------------------------------------

// Per-tensor constants of the DGC code's `initialize`, as reference/ref_dgc.cpp's make_plan.
using kernels::host::dgc_plan;
using kernels::host::DgcPlan;

// grbs / rbgs: the shared block draw (host_plans.cpp) as the payload-order list of flattened
// indices that the device gathers / scatters.
std::vector<std::uint32_t> block_indices(const CompressorDesc& desc, const CompressContext& ctx) {
  std::uint64_t count = 0;
  std::vector<std::uint32_t> idx;
  for (const kernels::host::Run& r : kernels::host::block_runs(desc, ctx, count))
    for (std::uint64_t j = 0; j < r.len; ++j) idx.push_back(static_cast<std::uint32_t>(r.at + j));
  return idx;
}

// Ordered compaction: tile counts on the device, their scan on the host (the total is needed
// there anyway), then the matches written in position order, the first `limit` kept.
struct Compaction {
  std::vector<std::uint64_t> offsets;  // per tile, exclusive
  std::uint64_t total = 0;
};
Status compact_count(const detail::CompactArgs& a, cudaStream_t s, Compaction& c) {
  const std::uint64_t tiles = detail::compact_tiles(a.m);
  std::vector<std::uint32_t> counts(tiles);
  c.offsets.assign(tiles, 0);
  c.total = 0;
  if (tiles == 0) return Status::success();
  DevBuf d_counts;
  GRADCOMP_TRY(d_counts.alloc(4 * tiles, s));
  GC_CU(detail::compact_count(a, d_counts.as<std::uint32_t>(), s));
  GC_CU(cudaMemcpyAsync(counts.data(), d_counts.as<void>(), 4 * tiles, cudaMemcpyDeviceToHost, s));
  GC_CU(cudaStreamSynchronize(s));
  for (std::uint64_t t = 0; t < tiles; ++t) {
    c.offsets[t] = c.total;
    c.total += counts[t];
  }
  return Status::success();
}
Status compact_write(const detail::CompactArgs& a, const Compaction& c, std::uint64_t limit,
                     std::uint32_t* out, cudaStream_t s) {
  if (c.offsets.empty() || limit == 0) return Status::success();
  DevBuf d_off;
  GRADCOMP_TRY(d_off.alloc(8 * c.offsets.size(), s));
  GC_CU(cudaMemcpyAsync(d_off.as<void>(), c.offsets.data(), 8 * c.offsets.size(),
                        cudaMemcpyHostToDevice, s));
  GC_CU(detail::compact_write(a, d_off.as<std::uint64_t>(), limit, out, s));
  GC_CU(cudaStreamSynchronize(s));  // c.offsets is pageable host memory
  return Status::success();
}

// The DGC code's sampled-threshold selection (selection=code) before zero dropping, as
// ref_dgc.cpp's select_code: sorted indices into sel (capacity k), their number in *count.
Status dgc_select_code(const CompressorDesc& desc, const CompressContext& ctx, const DgcPlan& plan,
                       const float* in, std::uint32_t* sel, std::uint64_t* count, cudaStream_t s) {
  const std::uint64_t n = desc.n;
  std::uint64_t off = 0;
  if (plan.stride > 1) {
    const RngStream rng(desc.seed, RngPurpose::kDgcSampling, ctx.step, ctx.tensor_id, ctx.rank);
    off = rng.uniform_below(plan.stride, 0);
  }
  const std::uint64_t m = (n - off + plan.stride - 1) / plan.stride;  // samples off, off+stride..
  DevBuf samples, top, topv;
  GRADCOMP_TRY(samples.alloc(4 * m, s));
  GRADCOMP_TRY(top.alloc(4 * plan.k_samp, s));
  GRADCOMP_TRY(topv.alloc(4 * plan.k_samp, s));
  GC_CU(detail::strided_abs(in, off, plan.stride, m, samples.as<float>(), s));
  GC_CU(detail::topk_indices(samples.as<float>(), m, plan.k_samp, top.as<std::uint32_t>(), s));
  Slots unused;
  GRADCOMP_TRY(unused.init(s));
  GC_CU(detail::gather(samples.as<float>(), top.as<std::uint32_t>(), plan.k_samp, 1.0, false,
                       topv.as<float>(), unused.d(), s));
  std::vector<float> tv(plan.k_samp);
  GC_CU(cudaMemcpyAsync(tv.data(), topv.as<void>(), 4 * plan.k_samp, cudaMemcpyDeviceToHost, s));
  GC_CU(cudaStreamSynchronize(s));
  // thr = the smallest of the k_samp largest samples (NaN only if all of them are NaN).
  float thr = tv[0];
  for (const float v : tv)
    if (std::isnan(thr) || (!std::isnan(v) && v < thr)) thr = v;

  detail::CompactArgs a;
  a.mode = detail::Compact::kDgcCandidates;
  a.in = in;
  a.thr = thr;
  a.m = n;
  Compaction c;
  GRADCOMP_TRY(compact_count(a, s, c));
  if (n > plan.n_samp) {  // adaptation only when sampling happened: at most 10 rounds
    const double k = static_cast<double>(plan.k);
    for (int round = 0; round < 10; ++round) {
      const double cnt = static_cast<double>(c.total);
      if (cnt > k) {
        if (cnt > 1.3 * k) {
          // Exact top-k among the candidates. Every candidate ranks above every other element
          // (|v| >= thr > |v'|, NaN first), so that is the global exact top-k (same ties).
          GC_CU(detail::topk_indices(in, n, plan.k, sel, s));
          *count = plan.k;
          return Status::success();
        }
        break;
      } else if (cnt < 0.8 * k) {
        a.thr = a.thr * 0.8f;  // float arithmetic, like the code's float32 tensor
        GRADCOMP_TRY(compact_count(a, s, c));
      } else {
        break;
      }
    }
  }
  // The first k candidates in index order.
  *count = std::min(c.total, plan.k);
  return compact_write(a, c, plan.k, sel, s);
}

// ---- compress ---------------------------------------------------------------------------------

Status compress_impl(const CompressorDesc& desc, const CompressContext& ctx, const float* in,
                     std::uint8_t* payload, std::uint64_t* size, cudaStream_t s) {
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  const std::uint64_t n = desc.n;
  std::uint8_t* body = payload + kHeaderBytes;
  Slots slots;
  GRADCOMP_TRY(slots.init(s));
  std::uint64_t total = payload_bytes(desc);
  DevGroups groups;  // outlives the kernels that read it (freed after the final sync)
  DevBuf tmp, acc, idx_buf, count_buf, vals_buf;
  switch (desc.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kFp16:
    case CompressorKind::kBf16: {
      GRADCOMP_TRY(put_header(desc, ctx, 0, n, elem_bytes(desc.kind) * n, payload, s));
      GC_CU(detail::elem_encode(elem_fmt(desc.kind), in, n, body, check, slots.d(), s));
      break;
    }
    case CompressorKind::kSign:
    case CompressorKind::kBlockSign: {
      const bool bs = desc.kind == CompressorKind::kBlockSign;
      const std::uint64_t nb = bs ? sign_group_count(desc) : n;
      GRADCOMP_TRY(
          put_header(desc, ctx, 0, nb, bs ? blocksign_body(desc) : packed_bytes(n, 1), payload, s));
      GC_CU(detail::sign_pack(in, n, reinterpret_cast<std::uint32_t*>(body), check, slots.d(), s));
      if (bs && desc.scale != SignScale::kNone && nb > 0) {
        GRADCOMP_TRY(make_groups(desc, desc.block, segs_if(desc, desc.block), s, groups));
        GRADCOMP_TRY(tmp.alloc(8 * detail::reduce_tmp_doubles(groups.g), s));
        GRADCOMP_TRY(acc.alloc(8 * nb, s));
        const bool l1 = desc.scale == SignScale::kL1;
        GC_CU(detail::group_reduce(l1 ? detail::Reduce::kSumAbs : detail::Reduce::kSumSq, in,
                                   groups.g, tmp.as<double>(), acc.as<double>(), s));
        GC_CU(detail::group_finish(l1 ? detail::Finish::kMeanL1 : detail::Finish::kRmsL2,
                                   acc.as<double>(), groups.g,
                                   reinterpret_cast<float*>(body + packed_bytes(n, 1)), s));
      }
      break;
    }
    case CompressorKind::kQsgd: {
      const std::uint64_t nb = qsgd_group_count(desc);
      GRADCOMP_TRY(put_header(desc, ctx, 0, nb, qsgd_body(desc), payload, s));
      if (check) GC_CU(detail::find_nonfinite(in, n, slots.d(), s));
      if (nb > 0) {
        GRADCOMP_TRY(make_groups(desc, desc.bucket, segs_if(desc, desc.bucket), s, groups));
        GRADCOMP_TRY(tmp.alloc(8 * detail::reduce_tmp_doubles(groups.g), s));
        GRADCOMP_TRY(acc.alloc(8 * nb, s));
        const bool l2 = desc.norm == QsgdNorm::kL2;
        auto* norms = reinterpret_cast<float*>(body + packed_bytes(n, qsgd_bits(desc)));
        GC_CU(detail::group_reduce(l2 ? detail::Reduce::kSumSq : detail::Reduce::kMaxAbs, in,
                                   groups.g, tmp.as<double>(), acc.as<double>(), s));
        GC_CU(detail::group_finish(l2 ? detail::Finish::kSqrt : detail::Finish::kAsIs,
                                   acc.as<double>(), groups.g, norms, s));
        detail::QsgdParams p;
        p.levels = desc.levels;
        p.bits = qsgd_bits(desc);
        p.seed = desc.seed;
        p.step = ctx.step;
        p.tensor_id = ctx.tensor_id;
        p.rank = ctx.rank;
        GC_CU(
            detail::qsgd_encode(in, groups.g, norms, p, reinterpret_cast<std::uint32_t*>(body), s));
      }
      break;
    }
    case CompressorKind::kTernGrad: {
      const std::vector<Segment> segs = n == 0 ? std::vector<Segment>{} : tensor_segments(desc);
      const std::uint64_t ns = segs.size(), codes = packed_bytes(n, 2);
      GRADCOMP_TRY(put_header(desc, ctx, 0, ns, codes + 4 * ns, payload, s));
      if (check) GC_CU(detail::find_nonfinite(in, n, slots.d(), s));
      if (ns == 0) break;
      GRADCOMP_TRY(make_groups(desc, 0, segs, s, groups));
      GRADCOMP_TRY(tmp.alloc(8 * detail::reduce_tmp_doubles(groups.g), s));
      GRADCOMP_TRY(acc.alloc(8 * 3 * ns, s));  // max|g|, sum g, sum (g - mean)^2
      double* dacc = acc.as<double>();
      GC_CU(detail::group_reduce(detail::Reduce::kMaxAbs, in, groups.g, tmp.as<double>(), dacc, s));
      GC_CU(
          detail::group_reduce(detail::Reduce::kSum, in, groups.g, tmp.as<double>(), dacc + ns, s));
      std::vector<double> stats(3 * ns, 0.0);
      GC_CU(cudaMemcpyAsync(stats.data(), dacc, 16 * ns, cudaMemcpyDeviceToHost, s));
      GRADCOMP_TRY(slots.read(s));
      if (slots.bad(detail::kSlotInput)) return nonfinite_input(desc, in, slots.host[0], s);
      std::vector<double> mean(ns);
      for (std::uint64_t t = 0; t < ns; ++t) {
        mean[t] = stats[ns + t] / static_cast<double>(segs[t].size);
      }
      DevBuf centers;
      if (desc.clip != 0.0) {
        // Second pass around the segment means, as the reference's two-pass sigma.
        GRADCOMP_TRY(centers.alloc(8 * ns, s));
        GC_CU(cudaMemcpyAsync(centers.as<void>(), mean.data(), 8 * ns, cudaMemcpyHostToDevice, s));
        GC_CU(detail::group_reduce(detail::Reduce::kSumSqDev, in, groups.g, tmp.as<double>(),
                                   dacc + 2 * ns, s, centers.as<double>()));
        GC_CU(cudaMemcpyAsync(stats.data() + 2 * ns, dacc + 2 * ns, 8 * ns, cudaMemcpyDeviceToHost,
                              s));
        GC_CU(cudaStreamSynchronize(s));
      }
      // bounds/scalers for the kernel, then the wire scalers (canonical NaN), in one buffer.
      std::vector<float> host(3 * ns);
      for (std::uint64_t t = 0; t < ns; ++t) {
        const float max_abs = static_cast<float>(stats[t]);
        float b = max_abs;
        if (desc.clip != 0.0 && std::isfinite(max_abs)) {
          const double sigma = std::sqrt(stats[2 * ns + t] / static_cast<double>(segs[t].size));
          if (sigma != 0.0) b = static_cast<float>(std::min(desc.clip * sigma, double{FLT_MAX}));
        }
        host[t] = b;
        float sc = b;
        if (desc.scaler == TernScaler::kShared) {
          GRADCOMP_CHECK_ARG(ctx.shared_scalers.size() == ns,
                             "terngrad: scaler=shared needs one shared scaler per tensor segment: "
                             "got ",
                             ctx.shared_scalers.size(), ", expected ", ns);
          sc = ctx.shared_scalers[t];
          GRADCOMP_CHECK_ARG(std::isfinite(sc), "terngrad: shared scaler[", t, "] = ", sc,
                             " is not finite");
          GRADCOMP_CHECK_ARG(sc >= b, "terngrad: shared scaler[", t, "] = ", sc,
                             " is below this worker's local scaler ", b);
        }
        host[ns + t] = sc;
        host[2 * ns + t] = std::isnan(sc) ? std::numeric_limits<float>::quiet_NaN() : sc;
      }
      DevBuf bs;
      GRADCOMP_TRY(bs.alloc(8 * ns, s));
      GC_CU(cudaMemcpyAsync(bs.as<void>(), host.data(), 8 * ns, cudaMemcpyHostToDevice, s));
      GC_CU(cudaMemcpyAsync(body + codes, host.data() + 2 * ns, 4 * ns, cudaMemcpyHostToDevice, s));
      detail::QsgdParams p;
      p.seed = desc.seed;
      p.step = ctx.step;
      p.tensor_id = ctx.tensor_id;
      p.rank = ctx.rank;
      GC_CU(detail::terngrad_encode(in, groups.g, bs.as<float>(), bs.as<float>() + ns, p,
                                    reinterpret_cast<std::uint32_t*>(body), s));
      GC_CU(cudaStreamSynchronize(s));  // bs and centers are freed at the end of this block
      break;
    }
    case CompressorKind::kTopK:
    case CompressorKind::kRandK: {
      const std::uint64_t k = sparsifier_k(desc, n);
      if (sparse_dense(desc, k)) {
        GRADCOMP_TRY(put_header(desc, ctx, kFlagDense, n, 4 * n, payload, s));
        GC_CU(detail::elem_encode(ElemFmt::kF32, in, n, body, check, slots.d(), s));
        break;
      }
      if (check) GC_CU(detail::find_nonfinite(in, n, slots.d(), s));
      auto* idx = reinterpret_cast<std::uint32_t*>(body);
      if (desc.kind == CompressorKind::kTopK) {
        GRADCOMP_TRY(put_header(desc, ctx, 0, k, 8 * k, payload, s));
        GC_CU(detail::topk_indices(in, n, k, idx, s));
        GC_CU(detail::gather(in, idx, k, 1.0, false, reinterpret_cast<float*>(body + 4 * k),
                             slots.d(), s));
        break;
      }
      const bool priv = desc.indices == IndexMode::kPrivate;
      GRADCOMP_TRY(put_header(desc, ctx, 0, k, (priv ? 8 : 4) * k, payload, s));
      if (k == 0) break;
      std::vector<std::uint32_t> host_idx;
      GRADCOMP_TRY(randk_index_set(desc, ctx, k, s, host_idx));
      const std::uint32_t* d_idx = idx;
      if (!priv) {
        GRADCOMP_TRY(idx_buf.alloc(4 * k, s));
        d_idx = idx_buf.as<std::uint32_t>();
      }
      GC_CU(cudaMemcpyAsync(const_cast<std::uint32_t*>(d_idx), host_idx.data(), 4 * k,
                            cudaMemcpyHostToDevice, s));
      const double scale = desc.randk_scale == RandKScale::kUnbiased
                               ? static_cast<double>(n) / static_cast<double>(k)
                               : 1.0;
      GC_CU(detail::gather(in, d_idx, k, scale, check,
                           reinterpret_cast<float*>(body + (priv ? 4 * k : 0)), slots.d(), s));
      GRADCOMP_TRY(slots.read(s));  // also keeps host_idx alive until the copy is done
      if (slots.bad(detail::kSlotInput)) return nonfinite_input(desc, in, slots.host[0], s);
      if (slots.bad(detail::kSlotOverflow)) {
        const std::uint64_t j = host_idx[slots.host[detail::kSlotOverflow]];
        float v = 0.0f;
        GRADCOMP_TRY(read_input(in, j, s, &v));
        return make_status(StatusCode::kNonFinite, "randk: input[", j, "] = ", v,
                           " times n/k = ", scale, " overflows f32 (nonfinite=error)");
      }
      break;
    }
    case CompressorKind::kThreshold: {
      const double thr = std::max(desc.tau, 0.0);
      if (check) GC_CU(detail::find_nonfinite(in, n, slots.d(), s));
      GRADCOMP_TRY(idx_buf.alloc(4 * n, s));
      GRADCOMP_TRY(count_buf.alloc(8, s));
      GC_CU(detail::threshold_select(in, n, thr, idx_buf.as<std::uint32_t>(),
                                     count_buf.as<std::uint64_t>(), s));
      std::uint64_t c = 0;
      GC_CU(cudaMemcpyAsync(&c, count_buf.as<void>(), 8, cudaMemcpyDeviceToHost, s));
      GRADCOMP_TRY(slots.read(s));
      if (slots.bad(detail::kSlotInput)) return nonfinite_input(desc, in, slots.host[0], s);
      if (n > 0 && 8 * c >= 4 * n) {
        GRADCOMP_TRY(put_header(desc, ctx, kFlagDense, n, 4 * n, payload, s));
        GC_CU(detail::threshold_dense(in, n, thr, reinterpret_cast<float*>(body), s));
        total = kHeaderBytes + 4 * n;
      } else {
        GRADCOMP_TRY(put_header(desc, ctx, 0, c, 8 * c, payload, s));
        GC_CU(cudaMemcpyAsync(body, idx_buf.as<void>(), 4 * c, cudaMemcpyDeviceToDevice, s));
        GC_CU(detail::gather(in, idx_buf.as<std::uint32_t>(), c, 1.0, false,
                             reinterpret_cast<float*>(body + 4 * c), slots.d(), s));
        total = kHeaderBytes + 8 * c;
      }
      break;
    }
    case CompressorKind::kDgc: {
      const DgcPlan plan = dgc_plan(desc);
      const std::uint64_t k = plan.k;
      if (sparse_dense(desc, k)) {
        GRADCOMP_TRY(put_header(desc, ctx, kFlagDense, n, 4 * n, payload, s));
        GC_CU(detail::elem_encode(ElemFmt::kF32, in, n, body, check, slots.d(), s));
        break;
      }
      if (check) {
        GC_CU(detail::find_nonfinite(in, n, slots.d(), s));
        GRADCOMP_TRY(slots.read(s));
        if (slots.bad(detail::kSlotInput)) return nonfinite_input(desc, in, slots.host[0], s);
      }
      std::uint64_t c = 0;
      if (k > 0) {
        GRADCOMP_TRY(idx_buf.alloc(4 * k, s));
        if (desc.selection == DgcSelection::kExact) {
          GC_CU(detail::topk_indices(in, n, k, idx_buf.as<std::uint32_t>(), s));
          c = k;
        } else {
          GRADCOMP_TRY(dgc_select_code(desc, ctx, plan, in, idx_buf.as<std::uint32_t>(), &c, s));
        }
      }
      // [P] zero values are dropped: the kept indices go straight into the body.
      detail::CompactArgs a;
      a.mode = detail::Compact::kNonZero;
      a.in = in;
      a.idx = idx_buf.as<std::uint32_t>();
      a.m = c;
      Compaction nz;
      GRADCOMP_TRY(compact_count(a, s, nz));
      const std::uint64_t sent = nz.total;
      auto* idx = reinterpret_cast<std::uint32_t*>(body);
      GRADCOMP_TRY(compact_write(a, nz, sent, idx, s));
      GRADCOMP_TRY(put_header(desc, ctx, 0, sent, 8 * sent, payload, s));
      GC_CU(detail::gather(in, idx, sent, 1.0, false, reinterpret_cast<float*>(body + 4 * sent),
                           slots.d(), s));
      total = kHeaderBytes + 8 * sent;
      break;
    }
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs: {
      const std::vector<std::uint32_t> host_idx = block_indices(desc, ctx);
      const std::uint64_t c = host_idx.size();
      const bool dense = kernels::host::block_always_dense(desc);
      GRADCOMP_TRY(put_header(desc, ctx, dense ? kFlagDense : 0, c, 4 * c, payload, s));
      if (check) GC_CU(detail::find_nonfinite(in, n, slots.d(), s));
      if (dense) {
        GC_CU(cudaMemcpyAsync(body, in, 4 * n, cudaMemcpyDeviceToDevice, s));
      } else if (c > 0) {
        GRADCOMP_TRY(upload_indices(host_idx, s, idx_buf));
        GC_CU(detail::gather(in, idx_buf.as<std::uint32_t>(), c, 1.0, false,
                             reinterpret_cast<float*>(body), slots.d(), s));
      }
      total = kHeaderBytes + 4 * c;
      break;
    }
    case CompressorKind::kSignTopK:
    case CompressorKind::kQsgdTopK:
    case CompressorKind::kQsgdRandK: {
      const std::uint64_t k = sparsifier_k(desc, n);
      if (sparse_dense(desc, k)) {
        GRADCOMP_TRY(put_header(desc, ctx, kFlagDense, n, 4 * n, payload, s));
        GC_CU(detail::elem_encode(ElemFmt::kF32, in, n, body, check, slots.d(), s));
        break;
      }
      GRADCOMP_TRY(put_header(desc, ctx, 0, k, composed_body(desc, k), payload, s));
      if (check) GC_CU(detail::find_nonfinite(in, n, slots.d(), s));
      if (k == 0) break;
      const bool sends = composed_sends_indices(desc);
      // The support: exact top-k (CUB) or random-k (Floyd), written where the wire wants it.
      std::uint32_t* support = reinterpret_cast<std::uint32_t*>(body);
      if (!sends) {
        GRADCOMP_TRY(idx_buf.alloc(4 * k, s));
        support = idx_buf.as<std::uint32_t>();
      }
      if (desc.kind == CompressorKind::kQsgdRandK) {
        std::vector<std::uint32_t> host_idx;
        GRADCOMP_TRY(randk_index_set(desc, ctx, k, s, host_idx));
        GC_CU(cudaMemcpyAsync(support, host_idx.data(), 4 * k, cudaMemcpyHostToDevice, s));
        GC_CU(cudaStreamSynchronize(s));  // host_idx dies at the end of this block
      } else {
        GC_CU(detail::topk_indices(in, n, k, support, s));
      }
      GRADCOMP_TRY(vals_buf.alloc(4 * k, s));
      float* vals = vals_buf.as<float>();
      GC_CU(detail::gather(in, support, k, 1.0, false, vals, slots.d(), s));
      const Groups one = single_group(k);
      GRADCOMP_TRY(tmp.alloc(8 * detail::reduce_tmp_doubles(one), s));
      GRADCOMP_TRY(acc.alloc(8, s));
      std::uint8_t* p = body + (sends ? 4 * k : 0);
      if (desc.kind == CompressorKind::kSignTopK) {
        // Sign bits of the k gathered values, then ||Top_k||_1 / k.
        GC_CU(detail::sign_pack(vals, k, reinterpret_cast<std::uint32_t*>(p), false, slots.d(), s));
        GC_CU(detail::group_reduce(detail::Reduce::kSumAbs, vals, one, tmp.as<double>(),
                                   acc.as<double>(), s));
        GC_CU(detail::group_finish(detail::Finish::kMeanL1, acc.as<double>(), one,
                                   reinterpret_cast<float*>(p + packed_bytes(k, 1)), s));
        break;
      }
      // QSGD over the k values as one bucket, rounding uniforms keyed by the global index.
      const bool l2 = desc.norm == QsgdNorm::kL2;
      auto* norm = reinterpret_cast<float*>(p + packed_bytes(k, qsgd_bits(desc)));
      GC_CU(detail::group_reduce(l2 ? detail::Reduce::kSumSq : detail::Reduce::kMaxAbs, vals, one,
                                 tmp.as<double>(), acc.as<double>(), s));
      GC_CU(detail::group_finish(l2 ? detail::Finish::kSqrt : detail::Finish::kAsIs,
                                 acc.as<double>(), one, norm, s));
      detail::QsgdParams qp = composed_qsgd(desc, ctx, support);
      GC_CU(detail::qsgd_encode(vals, one, norm, qp, reinterpret_cast<std::uint32_t*>(p), s));
      break;
    }
    default:
      return make_status(StatusCode::kUnimplemented, "cuda:native does not implement ",
                         compressor_name(desc.kind));
  }
  GRADCOMP_TRY(slots.read(s));
  if (slots.bad(detail::kSlotInput)) return nonfinite_input(desc, in, slots.host[0], s);
  if (slots.bad(detail::kSlotOverflow)) {
    const std::uint64_t i = slots.host[detail::kSlotOverflow];
    float v = 0.0f;
    GRADCOMP_TRY(read_input(in, i, s, &v));
    return make_status(StatusCode::kNonFinite, compressor_name(desc.kind), ": input[", i, "] = ", v,
                       " overflows the format to Inf (nonfinite=error)");
  }
  *size = total;
  return Status::success();
}

// ---- decompress -------------------------------------------------------------------------------

Status body_check(const CompressorDesc& desc, Slots& slots, cudaStream_t s, const char* what) {
  GRADCOMP_TRY(slots.read(s));
  if (slots.bad(detail::kSlotBody)) {
    return corrupt(desc, what, " check failed at position ", slots.host[detail::kSlotBody]);
  }
  return Status::success();
}

// Head of the k-sparse decoders (dgc and the compositions): the dense flag must be set exactly
// when k >= n; a dense payload is checked and decoded here (done = true), otherwise the caller
// decodes the sparse body.
Status decode_k_dense(const CompressorDesc& desc, const WireHeader& h, const std::uint8_t* body,
                      std::uint64_t k, float* out, bool acc, float alpha, Slots& slots,
                      cudaStream_t s, bool& done) {
  const std::uint64_t n = desc.n;
  const bool dense = sparse_dense(desc, k);
  done = false;
  if (((h.flags & kFlagDense) != 0) != dense) {
    return corrupt(desc, "dense flag is ", (h.flags & kFlagDense) ? "set" : "clear", " but k = ", k,
                   " and n = ", n, dense ? " require it" : " forbid it");
  }
  if (!dense) return Status::success();
  if (h.count != n) return corrupt(desc, "dense payload count ", h.count, " != n ", n);
  if (h.body_bytes != 4 * n) return corrupt(desc, "dense body is ", h.body_bytes, " bytes");
  const auto* vals = reinterpret_cast<const float*>(body);
  if (desc.nonfinite != NonfinitePolicy::kPropagate) {
    GC_CU(detail::check_values(vals, n, false, -1.0, slots.d(), s));
    GRADCOMP_TRY(body_check(desc, slots, s, "dense value finiteness"));
  }
  GC_CU(detail::elem_decode(ElemFmt::kF32, vals, n, out, acc, alpha, s));
  done = true;
  return Status::success();
}

// The header has been read and checked (read_header); body is on the device.
Status decode_impl(const CompressorDesc& desc, const CompressContext& ctx, const WireHeader& h,
                   const std::uint8_t* body, float* out, bool acc, float alpha, cudaStream_t s) {
  const std::uint64_t n = desc.n;
  const bool allow = desc.nonfinite == NonfinitePolicy::kPropagate;
  const std::uint64_t body_bytes = h.body_bytes;
  Slots slots;
  GRADCOMP_TRY(slots.init(s));
  DevGroups groups;
  DevBuf idx_buf, vals_buf;
  switch (desc.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kFp16:
    case CompressorKind::kBf16: {
      const std::uint64_t eb = elem_bytes(desc.kind);
      if (h.count != n) return corrupt(desc, "count ", h.count, " != n ", n);
      if (body_bytes != eb * n)
        return corrupt(desc, "body is ", body_bytes, " bytes, expected ", eb * n);
      if (!allow) {
        GC_CU(detail::elem_check(elem_fmt(desc.kind), body, n, slots.d(), s));
        GRADCOMP_TRY(body_check(desc, slots, s, "decoded element finiteness (nonfinite=error)"));
      }
      GC_CU(detail::elem_decode(elem_fmt(desc.kind), body, n, out, acc, alpha, s));
      break;
    }
    case CompressorKind::kSign:
    case CompressorKind::kBlockSign: {
      const bool bs = desc.kind == CompressorKind::kBlockSign;
      const std::uint64_t nb = bs ? sign_group_count(desc) : n;
      const std::uint64_t expected = bs ? blocksign_body(desc) : packed_bytes(n, 1);
      if (bs && h.flags != 0)
        return corrupt(desc, "flags set, but this compressor has no dense form");
      if (h.count != nb) return corrupt(desc, "count ", h.count, " != ", nb);
      if (body_bytes != expected)
        return corrupt(desc, "body is ", body_bytes, " bytes, expected ", expected);
      const auto* words = reinterpret_cast<const std::uint32_t*>(body);
      GC_CU(detail::check_padding(words, n, (n + 31) / 32, slots.d(), s));
      const float* scales = nullptr;
      if (bs && desc.scale != SignScale::kNone) {
        scales = reinterpret_cast<const float*>(body + packed_bytes(n, 1));
        GC_CU(detail::check_scales(scales, nb, allow, slots.d(), s));
      }
      GRADCOMP_TRY(body_check(desc, slots, s, "padding / scale"));
      if (scales) {
        GRADCOMP_TRY(make_groups(desc, desc.block, segs_if(desc, desc.block), s, groups));
      } else {
        groups.g.n = n;
      }
      GC_CU(detail::sign_decode(words, scales, groups.g, out, acc, alpha, s));
      break;
    }
    case CompressorKind::kQsgd: {
      const std::uint64_t nb = qsgd_group_count(desc);
      if (h.flags != 0) return corrupt(desc, "flags set, but this compressor has no dense form");
      if (h.count != nb) return corrupt(desc, "count ", h.count, " != ", nb, " buckets");
      if (body_bytes != qsgd_body(desc)) {
        return corrupt(desc, "body is ", body_bytes, " bytes, expected ", qsgd_body(desc));
      }
      if (n == 0) break;
      detail::QsgdParams p;
      p.levels = desc.levels;
      p.bits = qsgd_bits(desc);
      const std::uint64_t code_bytes = packed_bytes(n, p.bits);
      const auto* words = reinterpret_cast<const std::uint32_t*>(body);
      const auto* norms = reinterpret_cast<const float*>(body + code_bytes);
      GRADCOMP_TRY(make_groups(desc, desc.bucket, segs_if(desc, desc.bucket), s, groups));
      GC_CU(detail::check_padding(words, n * p.bits, code_bytes / 4, slots.d(), s));
      GC_CU(detail::check_scales(norms, nb, allow, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "padding / norm"));
      GC_CU(detail::qsgd_check(words, groups.g, norms, p, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "level code"));
      GC_CU(detail::qsgd_decode(words, groups.g, norms, p, out, acc, alpha, s));
      break;
    }
    case CompressorKind::kTernGrad: {
      const std::vector<Segment> segs = n == 0 ? std::vector<Segment>{} : tensor_segments(desc);
      const std::uint64_t ns = segs.size(), codes = packed_bytes(n, 2);
      if (h.flags != 0) return corrupt(desc, "flags set, but this compressor has no dense form");
      if (h.count != ns) return corrupt(desc, "count ", h.count, " != ", ns, " tensor segments");
      if (body_bytes != codes + 4 * ns) {
        return corrupt(desc, "body is ", body_bytes, " bytes, expected ", codes + 4 * ns);
      }
      if (n == 0) break;
      const auto* words = reinterpret_cast<const std::uint32_t*>(body);
      const auto* scalers = reinterpret_cast<const float*>(body + codes);
      GRADCOMP_TRY(make_groups(desc, 0, segs, s, groups));
      GC_CU(detail::check_padding(words, 2 * n, codes / 4, slots.d(), s));
      GC_CU(detail::check_scales(scalers, ns, allow, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "padding / scaler"));
      GC_CU(detail::terngrad_check(words, groups.g, scalers, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "ternary code"));
      GC_CU(detail::terngrad_decode(words, groups.g, scalers, out, acc, alpha, s));
      break;
    }
    case CompressorKind::kTopK:
    case CompressorKind::kRandK:
    case CompressorKind::kThreshold: {
      const bool dense_flag = (h.flags & kFlagDense) != 0;
      const std::uint64_t k = sparsifier_k(desc, n);
      const bool randk = desc.kind == CompressorKind::kRandK;
      const bool thresh = desc.kind == CompressorKind::kThreshold;
      const double thr = thresh ? std::max(desc.tau, 0.0) : -1.0;
      if (thresh ? (dense_flag && n == 0) : dense_flag != sparse_dense(desc, k)) {
        return corrupt(desc, "dense flag is ", dense_flag ? "set" : "clear", " but the descriptor ",
                       dense_flag ? "forbids" : "requires", " it");
      }
      if (dense_flag) {
        if (h.count != n) return corrupt(desc, "dense payload count ", h.count, " != n ", n);
        if (body_bytes != 4 * n) return corrupt(desc, "dense body is ", body_bytes, " bytes");
        const auto* vals = reinterpret_cast<const float*>(body);
        if (thresh) {
          GC_CU(detail::threshold_dense_check(vals, n, thr, allow, slots.d(), s));
          GRADCOMP_TRY(body_check(desc, slots, s, "dense value"));
          if (2 * slots.host[detail::kSlotCount] < n) {
            return corrupt(desc, "dense payload with only ", slots.host[detail::kSlotCount],
                           " selected values of n = ", n, " (the sparse form must be used)");
          }
        } else if (randk && !allow) {
          GC_CU(detail::check_values(vals, n, false, -1.0, slots.d(), s));
          GRADCOMP_TRY(body_check(desc, slots, s, "dense value finiteness"));
        }
        GC_CU(detail::elem_decode(ElemFmt::kF32, vals, n, out, acc, alpha, s));
        break;
      }
      std::uint64_t count = h.count;
      if (thresh) {
        if (n > 0 && 2 * count >= n) {
          return corrupt(desc, "sparse payload with count ", count, " for n = ", n,
                         " (the dense form must be used)");
        }
      } else if (count != k) {
        return corrupt(desc, "count ", count, " != k ", k);
      }
      const bool shared = randk && desc.indices == IndexMode::kShared;
      const std::uint64_t expected = (shared ? 4 : 8) * count;
      if (body_bytes != expected) {
        return corrupt(desc, "body is ", body_bytes, " bytes, expected ", expected);
      }
      const std::uint32_t* idx = reinterpret_cast<const std::uint32_t*>(body);
      const float* vals = reinterpret_cast<const float*>(body + (shared ? 0 : 4 * count));
      std::vector<std::uint32_t> host_idx;
      if (shared) {
        if (count > 0) GRADCOMP_TRY(randk_index_set(desc, ctx, count, s, host_idx));
        GRADCOMP_TRY(idx_buf.alloc(4 * count, s));
        GC_CU(cudaMemcpyAsync(idx_buf.as<void>(), host_idx.data(), 4 * count,
                              cudaMemcpyHostToDevice, s));
        idx = idx_buf.as<std::uint32_t>();
      } else {
        GC_CU(detail::check_indices(idx, count, n, slots.d(), s));
      }
      if (randk || thresh) GC_CU(detail::check_values(vals, count, allow, thr, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "index / value"));
      GC_CU(detail::sparse_decode(idx, vals, count, n, out, acc, alpha, s));
      break;
    }
    case CompressorKind::kDgc: {
      const std::uint64_t k = sparsifier_k(desc, n);
      bool done = false;
      GRADCOMP_TRY(decode_k_dense(desc, h, body, k, out, acc, alpha, slots, s, done));
      if (done) break;
      const std::uint64_t count = h.count;
      if (count > k) return corrupt(desc, "header count ", count, " exceeds k = ", k);
      if (body_bytes != 8 * count) {
        return corrupt(desc, "sparse body is ", body_bytes, " bytes, expected ", 8 * count);
      }
      const auto* idx = reinterpret_cast<const std::uint32_t*>(body);
      const auto* vals = reinterpret_cast<const float*>(body + 4 * count);
      GC_CU(detail::check_indices(idx, count, n, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "index"));
      GC_CU(detail::check_nonzero(vals, count, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "value (zero values are never sent)"));
      if (!allow) {
        GC_CU(detail::check_values(vals, count, false, -1.0, slots.d(), s));
        GRADCOMP_TRY(body_check(desc, slots, s, "value finiteness (nonfinite=error)"));
      }
      GC_CU(detail::sparse_decode(idx, vals, count, n, out, acc, alpha, s));
      break;
    }
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs: {
      const bool dense = kernels::host::block_always_dense(desc);
      if (((h.flags & kFlagDense) != 0) != dense) {
        return corrupt(desc, "dense flag is ", (h.flags & kFlagDense) ? "set" : "clear",
                       " but the descriptor ",
                       dense ? "always sends everything" : "selects blocks");
      }
      // The receiver regenerates the blocks from the shared stream; nothing else is trusted.
      const std::vector<std::uint32_t> host_idx = block_indices(desc, ctx);
      const std::uint64_t c = host_idx.size();
      if (h.count != c) {
        return corrupt(desc, "count ", h.count, " but the shared stream selects ", c,
                       " values at step ", ctx.step);
      }
      if (body_bytes != 4 * c)
        return corrupt(desc, "body is ", body_bytes, " bytes, expected ", 4 * c);
      const auto* vals = reinterpret_cast<const float*>(body);
      if (!allow) {
        GC_CU(detail::check_values(vals, c, false, -1.0, slots.d(), s));
        GRADCOMP_TRY(body_check(desc, slots, s, "value finiteness (nonfinite=error)"));
      }
      if (c > 0) GRADCOMP_TRY(upload_indices(host_idx, s, idx_buf));
      GC_CU(detail::sparse_decode(idx_buf.as<std::uint32_t>(), vals, c, n, out, acc, alpha, s));
      break;
    }
    case CompressorKind::kSignTopK:
    case CompressorKind::kQsgdTopK:
    case CompressorKind::kQsgdRandK: {
      const std::uint64_t k = sparsifier_k(desc, n);
      bool done = false;
      GRADCOMP_TRY(decode_k_dense(desc, h, body, k, out, acc, alpha, slots, s, done));
      if (done) break;
      if (h.count != k) return corrupt(desc, "count ", h.count, " != k ", k);
      if (body_bytes != composed_body(desc, k)) {
        return corrupt(desc, "body is ", body_bytes, " bytes, expected ", composed_body(desc, k),
                       " for k = ", k);
      }
      if (k == 0) {
        GC_CU(detail::sparse_decode(nullptr, nullptr, 0, n, out, acc, alpha, s));
        break;
      }
      const bool sends = composed_sends_indices(desc);
      const std::uint32_t* support = reinterpret_cast<const std::uint32_t*>(body);
      if (sends) {
        GC_CU(detail::check_indices(support, k, n, slots.d(), s));
      } else {
        std::vector<std::uint32_t> host_idx;
        GRADCOMP_TRY(randk_index_set(desc, ctx, k, s, host_idx));
        GRADCOMP_TRY(upload_indices(host_idx, s, idx_buf));
        support = idx_buf.as<std::uint32_t>();
      }
      const std::uint8_t* p = body + (sends ? 4 * k : 0);
      const auto* words = reinterpret_cast<const std::uint32_t*>(p);
      const std::uint32_t bits = desc.kind == CompressorKind::kSignTopK ? 1 : qsgd_bits(desc);
      const std::uint64_t code_bytes = packed_bytes(k, bits);
      const auto* scale = reinterpret_cast<const float*>(p + code_bytes);
      GC_CU(detail::check_padding(words, k * bits, code_bytes / 4, slots.d(), s));
      GC_CU(detail::check_scales(scale, 1, allow, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "index / padding / scale"));
      const Groups one = single_group(k);
      if (desc.kind == CompressorKind::kSignTopK) {
        GRADCOMP_TRY(vals_buf.alloc(4 * k, s));
        GC_CU(detail::sign_decode(words, scale, one, vals_buf.as<float>(), false, 0.0f, s));
        GC_CU(detail::sparse_decode(support, vals_buf.as<float>(), k, n, out, acc, alpha, s));
        break;
      }
      detail::QsgdParams qp = composed_qsgd(desc, ctx, support);
      GC_CU(detail::qsgd_check(words, one, scale, qp, slots.d(), s));
      GRADCOMP_TRY(body_check(desc, slots, s, "level code"));
      if (desc.scaled) {
        // 1 / (1 + beta), beta = min(k / s^2, sqrt(k) / s), as the reference (double).
        const double kd = static_cast<double>(k), sl = static_cast<double>(desc.levels);
        qp.factor = 1.0 / (1.0 + std::min(kd / (sl * sl), std::sqrt(kd) / sl));
      }
      GC_CU(detail::sparse_decode(nullptr, nullptr, 0, n, out, acc, alpha, s));  // zero / keep
      GC_CU(detail::qsgd_decode(words, one, scale, qp, out, acc, alpha, s));
      break;
    }
    default:
      return make_status(StatusCode::kUnimplemented, "cuda:native does not implement ",
                         compressor_name(desc.kind));
  }
  GC_CU(cudaStreamSynchronize(s));
  return Status::success();
}

Status check_desc(const CompressorDesc& desc) {
  GRADCOMP_TRY(validate(desc));
  if (!implements(desc)) {
    return make_status(StatusCode::kUnimplemented, "cuda:native does not implement ",
                       compressor_name(desc.kind), " (docs/cuda.md lists the CUDA kernels)");
  }
  const DeviceStatus& dev = device_status();
  if (!dev.available) return make_status(StatusCode::kUnimplemented, "cuda:native: ", dev.reason);
  return Status::success();
}

Status decode_device(const CompressorDesc& desc, const CompressContext& ctx,
                     const std::uint8_t* d_payload, std::uint64_t size, float* d_out, bool acc,
                     float alpha, cudaStream_t s) {
  GRADCOMP_TRY(check_desc(desc));
  GRADCOMP_CHECK_ARG(d_out != nullptr || desc.n == 0, compressor_name(desc.kind),
                     ": null output pointer");
  GRADCOMP_CHECK_ARG(d_payload != nullptr || size == 0, compressor_name(desc.kind),
                     ": null payload pointer");
  std::uint8_t hdr[kHeaderBytes] = {};
  if (size >= kHeaderBytes) {
    GC_CU(cudaMemcpyAsync(hdr, d_payload, kHeaderBytes, cudaMemcpyDeviceToHost, s));
    GC_CU(cudaStreamSynchronize(s));
  }
  // read_header reads only the first kHeaderBytes bytes and compares the span's length with
  // body_bytes: a span of the payload's true length over the host copy of its header.
  WireHeader h;
  const Status hs = read_header(Span<const std::uint8_t>(hdr, size), desc.kind, desc.n, ctx.step,
                                ctx.tensor_id, &h);
  if (!hs.ok()) return make_status(hs.code(), compressor_name(desc.kind), ": ", hs.message());
  return decode_impl(desc, ctx, h, d_payload + kHeaderBytes, d_out, acc, alpha, s);
}

// ---- registry (host spans) ------------------------------------------------------------------

Status host_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  GRADCOMP_TRY(check_desc(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(in.size() == desc.n, name, ": input has ", in.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(in.size() == 0 || in.data() != nullptr, name, ": null input pointer");
  const cudaStream_t s = cudaStreamPerThread;
  const std::uint64_t cap = payload_bytes(desc);
  DevBuf d_in, d_payload;
  GRADCOMP_TRY(d_in.alloc(4 * desc.n, s));
  GRADCOMP_TRY(d_payload.alloc(cap, s));
  GC_CU(cudaMemcpyAsync(d_in.as<void>(), in.data(), 4 * desc.n, cudaMemcpyHostToDevice, s));
  std::uint64_t size = 0;
  GRADCOMP_TRY(compress(desc, ctx, d_in.as<float>(), d_payload.as<std::uint8_t>(), cap, &size, s));
  std::vector<std::uint8_t> out(size);
  GC_CU(cudaMemcpyAsync(out.data(), d_payload.as<void>(), size, cudaMemcpyDeviceToHost, s));
  GC_CU(cudaStreamSynchronize(s));
  payload.swap(out);
  return Status::success();
}

Status host_decode(const CompressorDesc& desc, const CompressContext& ctx,
                   Span<const std::uint8_t> payload, bool acc, float alpha, Span<float> out) {
  GRADCOMP_TRY(check_desc(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(out.size() == desc.n, name, ": output has ", out.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(payload.size() == 0 || payload.data() != nullptr, name,
                     ": null payload pointer");
  WireHeader h;
  const Status hs = read_header(payload, desc.kind, desc.n, ctx.step, ctx.tensor_id, &h);
  if (!hs.ok()) return make_status(hs.code(), name, ": ", hs.message());
  const cudaStream_t s = cudaStreamPerThread;
  DevBuf d_body, d_out;
  GRADCOMP_TRY(d_body.alloc(h.body_bytes, s));
  GRADCOMP_TRY(d_out.alloc(4 * desc.n, s));
  GC_CU(cudaMemcpyAsync(d_body.as<void>(), payload.data() + kHeaderBytes, h.body_bytes,
                        cudaMemcpyHostToDevice, s));
  if (acc) {
    GC_CU(cudaMemcpyAsync(d_out.as<void>(), out.data(), 4 * desc.n, cudaMemcpyHostToDevice, s));
  }
  GRADCOMP_TRY(
      decode_impl(desc, ctx, h, d_body.as<std::uint8_t>(), d_out.as<float>(), acc, alpha, s));
  // Only a fully checked decode reaches the caller's buffer (out untouched on error).
  GC_CU(cudaMemcpyAsync(out.data(), d_out.as<void>(), 4 * desc.n, cudaMemcpyDeviceToHost, s));
  GC_CU(cudaStreamSynchronize(s));
  return Status::success();
}

Status host_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, Span<float> out) {
  return host_decode(desc, ctx, payload, false, 0.0f, out);
}
Status host_accumulate(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  return host_decode(desc, ctx, payload, true, alpha, out);
}

bool can_implement(const CompressorDesc& desc) { return check_desc(desc).ok(); }

CompressorOps ops_for(CompressorKind) {
  CompressorOps ops;
  ops.payload_bytes = payload_bytes;
  ops.compress = host_compress;
  ops.decompress = host_decompress;
  ops.decompress_accumulate = host_accumulate;
  return ops;
}

}  // namespace

const DeviceStatus& device_status() {
  static const DeviceStatus st = [] {
    DeviceStatus d;
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky-free error so later calls start clean
      d.reason = std::string("no CUDA device: cudaGetDeviceCount failed with ") +
                 cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
      return d;
    }
    if (count == 0) {
      d.reason = "no CUDA device: cudaGetDeviceCount found 0 devices";
      return d;
    }
    d.available = true;
    d.count = count;
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) d.name = prop.name;
    return d;
  }();
  return st;
}

bool implements(const CompressorDesc& desc) {
  switch (desc.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kFp16:
    case CompressorKind::kBf16:
    case CompressorKind::kSign:
    case CompressorKind::kBlockSign:
    case CompressorKind::kQsgd:
    case CompressorKind::kTernGrad:
    case CompressorKind::kTopK:
    case CompressorKind::kRandK:
    case CompressorKind::kThreshold:
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs:
    case CompressorKind::kSignTopK:
    case CompressorKind::kQsgdTopK:
    case CompressorKind::kQsgdRandK:
    case CompressorKind::kDgc: return true;
    default: return false;
  }
}

std::uint64_t payload_bytes(const CompressorDesc& desc) {
  const std::uint64_t n = desc.n;
  switch (desc.kind) {
    case CompressorKind::kIdentity: return kHeaderBytes + 4 * n;
    case CompressorKind::kFp16:
    case CompressorKind::kBf16: return kHeaderBytes + 2 * n;
    case CompressorKind::kSign: return kHeaderBytes + packed_bytes(n, 1);
    case CompressorKind::kBlockSign: return kHeaderBytes + blocksign_body(desc);
    case CompressorKind::kQsgd: return kHeaderBytes + qsgd_body(desc);
    case CompressorKind::kThreshold: return kHeaderBytes + 4 * n;
    case CompressorKind::kTernGrad:
      return kHeaderBytes + packed_bytes(n, 2) + 4 * (n == 0 ? 0 : tensor_segments(desc).size());
    case CompressorKind::kDgc: {
      const std::uint64_t k = sparsifier_k(desc, n);
      return kHeaderBytes + (sparse_dense(desc, k) ? 4 * n : 8 * k);  // the maximum
    }
    case CompressorKind::kTopK:
    case CompressorKind::kRandK: {
      const std::uint64_t k = sparsifier_k(desc, n);
      if (sparse_dense(desc, k)) return kHeaderBytes + 4 * n;
      const bool shared = desc.kind == CompressorKind::kRandK && desc.indices == IndexMode::kShared;
      return kHeaderBytes + (shared ? 4 : 8) * k;
    }
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs: return kHeaderBytes + 4 * kernels::host::block_max_values(desc);
    case CompressorKind::kSignTopK:
    case CompressorKind::kQsgdTopK:
    case CompressorKind::kQsgdRandK: {
      const std::uint64_t k = sparsifier_k(desc, n);
      return kHeaderBytes + (sparse_dense(desc, k) ? 4 * n : composed_body(desc, k));
    }
    default: return 0;
  }
}

Status compress(const CompressorDesc& desc, const CompressContext& ctx, const float* d_in,
                std::uint8_t* d_payload, std::uint64_t capacity, std::uint64_t* payload_size,
                cudaStream_t stream) {
  GRADCOMP_TRY(check_desc(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(d_in != nullptr || desc.n == 0, name, ": null input pointer");
  GRADCOMP_CHECK_ARG(d_payload != nullptr && payload_size != nullptr, name,
                     ": null payload pointer");
  GRADCOMP_CHECK_ARG(capacity >= payload_bytes(desc), name, ": payload capacity ", capacity,
                     " < payload_bytes ", payload_bytes(desc));
  return compress_impl(desc, ctx, d_in, d_payload, payload_size, stream);
}

Status decompress(const CompressorDesc& desc, const CompressContext& ctx,
                  const std::uint8_t* d_payload, std::uint64_t payload_size, float* d_out,
                  cudaStream_t stream) {
  return decode_device(desc, ctx, d_payload, payload_size, d_out, false, 0.0f, stream);
}

Status decompress_accumulate(const CompressorDesc& desc, const CompressContext& ctx,
                             const std::uint8_t* d_payload, std::uint64_t payload_size, float alpha,
                             float* d_out, cudaStream_t stream) {
  return decode_device(desc, ctx, d_payload, payload_size, d_out, true, alpha, stream);
}

bool fused_ef_supports(const CompressorDesc& desc) { return implements(desc); }

Status fused_ef_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         const kk::FusedEfParams& params, const float* d_grad, float* d_momentum,
                         float* d_error, std::uint8_t* d_payload, std::uint64_t capacity,
                         std::uint64_t* payload_size, cudaStream_t stream) {
  GRADCOMP_TRY(validate(desc));
  GRADCOMP_CHECK_ARG(fused_ef_supports(desc), "fused_ef: compressor ", compressor_name(desc.kind),
                     " has no fused CUDA kernel");
  GRADCOMP_TRY(check_desc(desc));
  const std::uint64_t n = desc.n;
  const bool has_m = params.momentum_form != MomentumForm::kNone;
  GRADCOMP_CHECK_ARG(d_grad != nullptr || n == 0, "fused_ef: null gradient pointer");
  GRADCOMP_CHECK_ARG(!has_m || d_momentum != nullptr || n == 0, "fused_ef: null momentum pointer");
  GRADCOMP_CHECK_ARG(!params.error_feedback || d_error != nullptr || n == 0,
                     "fused_ef: null error pointer");
  GRADCOMP_CHECK_ARG(d_payload != nullptr && payload_size != nullptr, "fused_ef: null payload");
  GRADCOMP_CHECK_ARG(capacity >= payload_bytes(desc), "fused_ef: payload capacity ", capacity,
                     " < payload_bytes ", payload_bytes(desc));
  GRADCOMP_CHECK_ARG(params.lr > 0.0, "fused_ef: lr must be > 0");
  const cudaStream_t s = stream;
  detail::FusedStep st;
  st.form = static_cast<int>(params.momentum_form);
  st.mu = params.momentum;
  st.inside = params.lr_placement == LrPlacement::kInside;
  st.eta = params.lr;
  st.rescale = params.lr_placement == LrPlacement::kOutsideRescale && params.has_lr_prev
                   ? params.lr_prev / params.lr
                   : 1.0;
  st.ef = params.error_feedback;
  switch (desc.kind) {
    case CompressorKind::kIdentity: st.decode = 0; break;
    case CompressorKind::kFp16: st.decode = 1; break;
    case CompressorKind::kBf16: st.decode = 2; break;
    case CompressorKind::kSign:
    case CompressorKind::kBlockSign: st.decode = 3; break;
    default: st.decode = 4; break;  // no inline decoder: see below
  }
  // A: p (scratch) and the gradient check; nothing of the caller's is written yet.
  DevBuf p;
  GRADCOMP_TRY(p.alloc(4 * n, s));
  Slots slots;
  GRADCOMP_TRY(slots.init(s));
  GC_CU(detail::fused_p(st, d_grad, has_m ? d_momentum : nullptr, st.ef ? d_error : nullptr, n,
                        p.as<float>(), slots.d(), s));
  GRADCOMP_TRY(slots.read(s));
  if (slots.bad(detail::kSlotInput)) {
    float v = 0.0f;
    GRADCOMP_TRY(read_input(d_grad, slots.host[detail::kSlotInput], s, &v));
    return make_status(StatusCode::kNonFinite, "fused_ef: grad[", slots.host[detail::kSlotInput],
                       "] = ", v, " is not finite");
  }
  // C: the compressor on p (its own checks; memories still untouched on error).
  std::uint64_t size = 0;
  GRADCOMP_TRY(compress_impl(desc, ctx, p.as<float>(), d_payload, &size, s));
  if (st.decode == 4 && st.ef) {
    // p -= D(C(p)) with the compressor's own fused accumulate (f32(f64(p) + f64(-1) f64(D)):
    // the bits of f32(p - D)); a decode error here still leaves m and e untouched.
    GRADCOMP_TRY(decompress_accumulate(desc, ctx, d_payload, size, -1.0f, p.as<float>(), s));
  }
  // B: m' and e' = p - D(C(p)).
  const std::uint8_t* body = d_payload + kHeaderBytes;
  DevGroups groups;
  groups.g.n = n;
  const float* scales = nullptr;
  if (desc.kind == CompressorKind::kBlockSign && desc.scale != SignScale::kNone && n > 0) {
    GRADCOMP_TRY(make_groups(desc, desc.block, segs_if(desc, desc.block), s, groups));
    scales = reinterpret_cast<const float*>(body + packed_bytes(n, 1));
  }
  GC_CU(detail::fused_update(st, d_grad, has_m ? d_momentum : nullptr, st.ef ? d_error : nullptr,
                             p.as<float>(), body, scales, groups.g, s));
  GC_CU(cudaStreamSynchronize(s));
  *payload_size = size;
  return Status::success();
}

CompressorImpl registry_entry() {
  CompressorImpl impl;
  impl.name = "cuda:native";
  impl.is_reference = false;
  impl.deterministic = true;  // fixed reduction trees, integer-only atomics
  impl.can_implement = can_implement;
  impl.ops = ops_for;
  return impl;
}

}  // namespace gradcomp::cuda
