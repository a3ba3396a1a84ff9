#include "host_plans.hpp"

#include <algorithm>
#include <cmath>

#include "gradcomp/rng.hpp"

namespace gradcomp::kernels::host {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }
long double ceil_guarded(long double x) { return std::ceil(x - x * 1e-12L); }

// The 1e-12 relative guard of sparsifier_k (decimal densities give the intended integer).
std::uint64_t guarded_floor(double x) {
  return static_cast<std::uint64_t>(std::floor(x + x * 1e-12));
}
std::uint64_t guarded_ceil(double x) {
  return static_cast<std::uint64_t>(std::ceil(x - x * 1e-12));
}

// Python round() (half to even) or half away from zero, for the non-negative x = d * rho.
std::uint64_t round_count(double x, RoundMode mode) {
  const double fl = std::floor(x);
  const double frac = x - fl;
  const std::uint64_t r = static_cast<std::uint64_t>(fl);
  const bool up = frac > 0.5 || (frac == 0.5 && (mode == RoundMode::kHalfUp || (r & 1u) != 0));
  return up ? r + 1 : r;
}
std::uint64_t axis_block(std::uint64_t d, double rho, RoundMode mode) {
  const std::uint64_t k = round_count(static_cast<double>(d) * rho, mode);
  return std::min<std::uint64_t>(std::max<std::uint64_t>(k, 1), d);
}

// grbs: per tensor segment, the block size k0 (x k1 for matrices) along the first axes; all
// trailing axes (inner) are taken whole.
struct GrbsShape {
  std::uint64_t offset = 0, d0 = 0, d1 = 1, inner = 1, k0 = 0, k1 = 1;
  bool matrix = false;
};
std::vector<GrbsShape> grbs_shapes(const CompressorDesc& desc) {
  std::vector<GrbsShape> out;
  if (desc.n == 0) return out;
  for (const Segment& seg : tensor_segments(desc)) {
    GrbsShape b;
    b.offset = seg.offset;
    b.d0 = seg.shape[0];
    if (seg.shape.size() >= 2) {
      b.matrix = true;
      b.d1 = seg.shape[1];
      for (std::size_t a = 2; a < seg.shape.size(); ++a) b.inner *= seg.shape[a];
      b.k1 = axis_block(b.d1, desc.rho1, desc.round);
    }
    b.k0 = axis_block(b.d0, desc.rho0, desc.round);
    out.push_back(b);
  }
  return out;
}

// rbgs: per tensor segment, the nominal block length (wrap: floor(density * size), at least 1;
// partition: the segment split into ceil(1 / density) equal blocks).
struct RbgsShape {
  std::uint64_t offset = 0, size = 0, nominal = 0;
};
std::vector<RbgsShape> rbgs_shapes(const CompressorDesc& desc) {
  std::vector<RbgsShape> out;
  if (desc.n == 0) return out;
  for (const Segment& seg : tensor_segments(desc)) {
    RbgsShape b;
    b.offset = seg.offset;
    b.size = seg.size;
    const double x = desc.density * static_cast<double>(seg.size);
    if (desc.density <= 0.0) {
      b.nominal = 0;
    } else if (desc.align == RbgsAlign::kWrap) {
      b.nominal = std::min(std::max<std::uint64_t>(guarded_floor(x), 1), seg.size);
    } else {
      const std::uint64_t nb = std::max<std::uint64_t>(guarded_ceil(1.0 / desc.density), 1);
      b.nominal = (seg.size + nb - 1) / nb;
    }
    out.push_back(b);
  }
  return out;
}

// One run per selected block row (its columns and all trailing axes are contiguous), merged
// with the previous run when it continues it both in the input and in the body: whole rows
// (every 1-D tensor) then form one run instead of one per element, which made grbs per-run
// overhead bound (2^19 one-element runs at n = 2^24).
void grbs_draw(const CompressorDesc& desc, const CompressContext& ctx, std::vector<Run>& runs,
               std::uint64_t& count) {
  const RngStream rng(desc.seed, RngPurpose::kGrbsBlocks, ctx.step, ctx.tensor_id, kSharedRank);
  const std::vector<GrbsShape> shapes = grbs_shapes(desc);
  for (std::size_t t = 0; t < shapes.size(); ++t) {
    const GrbsShape& b = shapes[t];
    if (!(rng.uniform_double(t, 0) <= desc.rho_layer)) continue;
    const std::uint64_t r0 = rng.uniform_below((b.d0 + b.k0 - 1) / b.k0, t, 1) * b.k0;
    const std::uint64_t r1 = std::min(r0 + b.k0, b.d0);
    std::uint64_t c0 = 0, c1 = 1;
    if (b.matrix) {
      c0 = rng.uniform_below((b.d1 + b.k1 - 1) / b.k1, t, 2) * b.k1;
      c1 = std::min(c0 + b.k1, b.d1);
    }
    const std::uint64_t len = (c1 - c0) * b.inner;
    for (std::uint64_t r = r0; r < r1; ++r) {
      const std::uint64_t at = b.offset + (r * b.d1 + c0) * b.inner;
      Run* last = runs.empty() ? nullptr : &runs.back();
      if (last && last->at + last->len == at && last->pos + last->len == count) {
        last->len += len;
      } else {
        runs.push_back(Run{at, count, len});
      }
      count += len;
    }
  }
}

// Per segment the block from its start to the segment end, then the wrapped part from the
// segment start.
void rbgs_draw(const CompressorDesc& desc, const CompressContext& ctx, std::vector<Run>& runs,
               std::uint64_t& count) {
  const RngStream rng(desc.seed, RngPurpose::kRbgsBlocks, ctx.step, ctx.tensor_id, kSharedRank);
  const std::vector<RbgsShape> shapes = rbgs_shapes(desc);
  for (std::size_t t = 0; t < shapes.size(); ++t) {
    const RbgsShape& b = shapes[t];
    if (b.nominal == 0) continue;
    std::uint64_t start = 0, len = 0;
    if (desc.align == RbgsAlign::kWrap) {
      start = rng.uniform_below(b.size, t, 0);
      len = b.nominal;
    } else {
      start = rng.uniform_below((b.size + b.nominal - 1) / b.nominal, t, 0) * b.nominal;
      len = std::min(b.nominal, b.size - start);
    }
    const std::uint64_t head = std::min(len, b.size - start);
    if (head > 0) runs.push_back(Run{b.offset + start, count, head});
    if (len > head) runs.push_back(Run{b.offset, count + head, len - head});
    count += len;
  }
}

}  // namespace

// ref_dgc.cpp's make_plan, restated.
DgcPlan dgc_plan(const CompressorDesc& desc) {
  DgcPlan p;
  const std::uint64_t n = desc.n;
  p.k = sparsifier_k(desc, n);
  p.n_samp = n;
  p.k_samp = p.k;
  if (n == 0 || p.k == 0 || p.k >= n) return p;
  const long double ratio = std::max(desc.sample_ratio, 0.01);
  const std::uint64_t pct = std::clamp<std::uint64_t>(
      static_cast<std::uint64_t>(ceil_guarded(ratio * static_cast<long double>(n))), 1, n);
  std::uint64_t cpr;
  if (desc.k >= 0) {
    cpr = ceil_div(2 * n, p.k);
  } else {
    const long double c = ceil_guarded(2.0L / static_cast<long double>(desc.density));
    cpr = c >= static_cast<long double>(n) ? n : static_cast<std::uint64_t>(c);
  }
  if (n <= cpr) return p;
  const std::uint64_t m = std::max(pct, cpr);
  p.stride = ceil_div(n, 32 * m) * 32 + 1;
  p.n_samp = n / p.stride;
  while (p.n_samp < m) {
    p.stride -= 8;
    p.n_samp = n / p.stride;
  }
  if (desc.k >= 0) {
    p.k_samp = ceil_div(p.n_samp * p.k, n);
  } else {
    p.k_samp = std::clamp<std::uint64_t>(
        static_cast<std::uint64_t>(ceil_guarded(static_cast<long double>(desc.density) *
                                                static_cast<long double>(p.n_samp))),
        1, p.n_samp);
  }
  return p;
}

std::uint64_t block_max_values(const CompressorDesc& desc) {
  std::uint64_t total = 0;
  if (desc.kind == CompressorKind::kGrbs) {
    for (const GrbsShape& b : grbs_shapes(desc)) total += b.k0 * b.k1 * b.inner;
  } else {
    for (const RbgsShape& b : rbgs_shapes(desc)) total += b.nominal;
  }
  return total;
}

bool block_always_dense(const CompressorDesc& desc) {
  if (desc.n == 0) return false;
  if (desc.kind == CompressorKind::kGrbs) {
    if (desc.rho_layer < 1.0) return false;
    for (const GrbsShape& b : grbs_shapes(desc))
      if (b.k0 < b.d0 || b.k1 < b.d1) return false;
    return true;
  }
  for (const RbgsShape& b : rbgs_shapes(desc))
    if (b.nominal < b.size) return false;
  return true;
}

std::vector<Run> block_runs(const CompressorDesc& desc, const CompressContext& ctx,
                            std::uint64_t& count) {
  std::vector<Run> runs;
  count = 0;
  if (block_always_dense(desc)) {
    // grbs's whole blocks are row-major and rbgs's dense body is not rotated: natural order.
    runs.push_back(Run{0, 0, desc.n});
    count = desc.n;
  } else if (desc.kind == CompressorKind::kGrbs) {
    grbs_draw(desc, ctx, runs, count);
  } else {
    rbgs_draw(desc, ctx, runs, count);
  }
  return runs;
}

}  // namespace gradcomp::kernels::host
