// dgc: Deep Gradient Compression's sparsifier (algorithms.md §5.4, §5.4.1, §7;
// docs/compressors/dgc.md).
//
// selection=code reproduces the authors' sampled-threshold selection (synxlin/deep-gradient-
// compression, dgc/compression.py): a strided sample of |v| gives a threshold, the threshold is
// adapted (x0.8, up to 10 times) or replaced by an exact top-k among the candidates (> 1.3 k),
// and the candidates are truncated to the first k in index order. selection=exact uses the exact
// top-k of ref_common (ties: lower index). Zero values are then dropped from the message [P].
//
// Body: `count` (<= k) u32 indices (strictly increasing) then `count` f32 values (non-zero).
// k = 0: empty body. k >= n: dense fallback (flag kFlagDense, body = the n input values).
#include <algorithm>
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {
namespace {

// Per-tensor constants of the DGC code's `initialize` (algorithms.md §5.4.1).
struct DgcPlan {
  std::uint64_t k = 0;       // num_selects
  std::uint64_t stride = 1;  // sample_stride
  std::uint64_t n_samp = 0;  // num_samples
  std::uint64_t k_samp = 0;  // top_k_samples
};

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// ceil(x) with the same 1e-12 relative guard as sparsifier_k, so decimal ratios give the
// intended integers (0.01 * 700 must be 7, not 8 as a bare double ceil gives).
long double ceil_guarded(long double x) { return std::ceil(x - x * 1e-12L); }

DgcPlan make_plan(const CompressorDesc& desc) {
  DgcPlan p;
  const std::uint64_t n = desc.n;
  p.k = sparsifier_k(desc, n);
  p.n_samp = n;
  p.k_samp = p.k;
  if (n == 0 || p.k == 0 || p.k >= n) return p;  // nothing to sample: empty or dense message
  // The code clamps sample_ratio to [0.01, 1]; validate() already guarantees (0, 1].
  const long double ratio = std::max(desc.sample_ratio, 0.01);
  const std::uint64_t pct =
      std::clamp<std::uint64_t>(static_cast<std::uint64_t>(ceil_guarded(ratio * n)), 1, n);
  // cpr = ceil(2 / rho). With an explicit k the density is rho = k / n, so cpr = ceil(2n / k)
  // exactly; with a density it is computed like k. A huge cpr (tiny rho) means "no sampling".
  std::uint64_t cpr;
  if (desc.k >= 0) {
    cpr = ceil_div(2 * n, p.k);
  } else {
    const long double c = ceil_guarded(2.0L / static_cast<long double>(desc.density));
    cpr = c >= static_cast<long double>(n) ? n : static_cast<std::uint64_t>(c);
  }
  if (n <= cpr) return p;  // small tensor: no sampling, threshold = exact k-th largest
  const std::uint64_t m = std::max(pct, cpr);
  // stride = ceil(n / m / 32) * 32 + 1. The code divides in double; the quotient is at most
  // 100/32 and at least 1/n away from an integer, so integer arithmetic gives the same result.
  p.stride = ceil_div(n, 32 * m) * 32 + 1;
  p.n_samp = n / p.stride;
  // Terminates: stride 32j+1 reaches 1 after 4j steps, where n_samp = n >= m.
  while (p.n_samp < m) {
    p.stride -= 8;
    p.n_samp = n / p.stride;
  }
  if (desc.k >= 0) {
    p.k_samp = ceil_div(p.n_samp * p.k, n);  // ceil(n_samp * k / n), exact
  } else {
    p.k_samp = std::clamp<std::uint64_t>(
        static_cast<std::uint64_t>(ceil_guarded(static_cast<long double>(desc.density) *
                                                static_cast<long double>(p.n_samp))),
        1, p.n_samp);
  }
  return p;
}

// "importance >= threshold" with NaN (nonfinite=propagate only) ordered above every number, as
// in topk_indices: a NaN element is always a candidate, a NaN threshold admits only NaNs.
bool at_least(float imp, float thr) {
  if (std::isnan(imp)) return true;
  if (std::isnan(thr)) return false;
  return imp >= thr;
}

// Candidates {j : |v_j| >= thr}, in increasing index order.
std::vector<std::uint32_t> candidates(Span<const float> imp, float thr) {
  std::vector<std::uint32_t> idx;
  for (std::size_t j = 0; j < imp.size(); ++j)
    if (at_least(imp[j], thr)) idx.push_back(static_cast<std::uint32_t>(j));
  return idx;
}

// The DGC code's selection (selection=code), before zero dropping. Sorted by index.
std::vector<std::uint32_t> select_code(const CompressorDesc& desc, const CompressContext& ctx,
                                       const DgcPlan& plan, Span<const float> in) {
  const std::uint64_t n = desc.n;
  std::vector<float> imp(n);
  for (std::uint64_t j = 0; j < n; ++j) imp[j] = std::fabs(in[j]);

  // samples = imp[off :: stride], off uniform in [0, stride) from the rank's own stream.
  std::uint64_t off = 0;
  if (plan.stride > 1) {
    const RngStream rng(desc.seed, RngPurpose::kDgcSampling, ctx.step, ctx.tensor_id, ctx.rank);
    off = rng.uniform_below(plan.stride, 0);
  }
  std::vector<float> samples;
  for (std::uint64_t j = off; j < n; j += plan.stride) samples.push_back(imp[j]);

  // thr = min(top-k_samp(samples)) = the k_samp-th largest sample (NaN largest).
  const std::vector<std::uint32_t> top = topk_indices(Span<const float>(samples), plan.k_samp);
  float thr = samples[top[0]];
  for (std::uint32_t t : top) {
    const float s = samples[t];
    if (std::isnan(thr) || (!std::isnan(s) && s < thr)) thr = s;
  }
  std::vector<std::uint32_t> idx = candidates(Span<const float>(imp), thr);

  // Adaptation (only when sampling happened): at most 10 rounds.
  if (n > plan.n_samp) {
    const double k = static_cast<double>(plan.k);
    for (int round = 0; round < 10; ++round) {
      const double c = static_cast<double>(idx.size());
      if (c > k) {
        if (c > 1.3 * k) {
          // Far too many: exact top-k of |v| among the candidates (resample=True), then stop.
          std::vector<float> cand(idx.size());
          for (std::size_t i = 0; i < idx.size(); ++i) cand[i] = imp[idx[i]];
          // Candidates are in index order, so the local tie rule (lower local index) is the
          // global one (lower index).
          const std::vector<std::uint32_t> best = topk_indices(Span<const float>(cand), plan.k);
          std::vector<std::uint32_t> chosen(best.size());
          for (std::size_t i = 0; i < best.size(); ++i) chosen[i] = idx[best[i]];
          idx.swap(chosen);  // topk_indices returns local indices sorted, so still sorted
        }
        break;  // 1 < c/k <= 1.3: keep, the truncation below drops the excess
      } else if (c < 0.8 * k) {
        // Too few: lower the threshold. The code multiplies a float32 tensor by 0.8, i.e. in
        // float arithmetic.
        thr = thr * 0.8f;
        idx = candidates(Span<const float>(imp), thr);
      } else {
        break;  // 0.8 k <= c <= k
      }
    }
  }
  // Truncation to the first k candidates in increasing index order (biased to low indices).
  if (idx.size() > plan.k) idx.resize(plan.k);
  return idx;
}

// Decoded values must be finite unless the descriptor lets non-finite values through.
Status check_values_finite(const CompressorDesc& desc, Span<const float> values) {
  if (desc.nonfinite == NonfinitePolicy::kPropagate) return Status::success();
  for (std::size_t i = 0; i < values.size(); ++i) {
    GRADCOMP_CHECK_PAYLOAD(std::isfinite(values[i]), "value[", i, "] = ", values[i],
                           " is not finite (nonfinite=error)");
  }
  return Status::success();
}

}  // namespace

std::uint64_t dgc_payload_bytes(const CompressorDesc& desc) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (desc.n > 0 && k >= desc.n) return kHeaderBytes + dense_body_bytes(desc.n);
  return kHeaderBytes + sparse_body_bytes(k);  // the maximum: zeros and truncation send fewer
}

Status dgc_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                    std::vector<std::uint8_t>& payload) {
  const DgcPlan plan = make_plan(desc);
  if (desc.n > 0 && plan.k >= desc.n) return write_dense(desc, ctx, in, payload);
  std::vector<std::uint32_t> idx;
  if (plan.k > 0) {
    idx = desc.selection == DgcSelection::kExact ? topk_indices(in, plan.k)
                                                 : select_code(desc, ctx, plan, in);
  }
  // [P] Zero values carry no information (and a zero threshold would pick them): drop them.
  std::vector<std::uint32_t> sent;
  std::vector<float> values;
  for (std::uint32_t j : idx) {
    if (in[j] == 0.0f) continue;  // also -0.0
    sent.push_back(j);
    values.push_back(in[j]);
  }
  return write_sparse(desc, ctx, sent, values, payload);
}

Status dgc_decompress(const CompressorDesc& desc, const CompressContext&, const WireHeader& header,
                      Span<const std::uint8_t> body, Span<float> out) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = desc.n > 0 && k >= desc.n;
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear", " but k = ", k,
                         " and n = ", desc.n, dense ? " require it" : " forbid it");
  if (dense) {
    GRADCOMP_TRY(read_dense(header, body, out));
    return check_values_finite(desc, Span<const float>(out.data(), out.size()));
  }
  // count <= k, body length, indices strictly increasing and < n.
  std::vector<std::uint32_t> indices;
  std::vector<float> values;
  GRADCOMP_TRY(read_sparse_lists(header, body, static_cast<std::uint32_t>(k), indices, values));
  for (std::size_t i = 0; i < values.size(); ++i) {
    GRADCOMP_CHECK_PAYLOAD(values[i] != 0.0f, "value[", i, "] (index ", indices[i],
                           ") is zero, but zero values are never sent");
  }
  GRADCOMP_TRY(check_values_finite(desc, Span<const float>(values)));
  for (std::size_t i = 0; i < indices.size(); ++i) out[indices[i]] = values[i];
  return Status::success();
}

}  // namespace gradcomp::ref::detail
