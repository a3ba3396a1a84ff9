// Host side of grbs / rbgs on CUDA: the shared-random blocks are drawn on the host (a few draws
// per tensor segment, the same RngStream keying as reference/ref_grbs.cpp and ref_rbgs.cpp) and
// expanded to the payload-order list of flattened indices; the device gathers / scatters them.
#include "cu_blocks.hpp"

#include <algorithm>
#include <cmath>

#include "gradcomp/rng.hpp"

namespace gradcomp::cuda::detail {
namespace {

// Python round() (half to even) or half away from zero, for x = d * rho >= 0.
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
// The 1e-12 relative guard of sparsifier_k (decimal densities give the intended integer).
std::uint64_t guarded_floor(double x) {
  return static_cast<std::uint64_t>(std::floor(x + x * 1e-12));
}
std::uint64_t guarded_ceil(double x) {
  return static_cast<std::uint64_t>(std::ceil(x - x * 1e-12));
}

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

}  // namespace

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

void block_indices(const CompressorDesc& desc, const CompressContext& ctx,
                   std::vector<std::uint32_t>& idx) {
  idx.clear();
  if (block_always_dense(desc)) {
    // Natural order: grbs's whole blocks are row-major, rbgs's dense body is not rotated.
    idx.resize(desc.n);
    for (std::uint64_t i = 0; i < desc.n; ++i) idx[i] = static_cast<std::uint32_t>(i);
    return;
  }
  if (desc.kind == CompressorKind::kGrbs) {
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
      for (std::uint64_t r = r0; r < r1; ++r)
        for (std::uint64_t c = c0; c < c1; ++c)
          for (std::uint64_t i = 0; i < b.inner; ++i)
            idx.push_back(static_cast<std::uint32_t>(b.offset + (r * b.d1 + c) * b.inner + i));
    }
    return;
  }
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
    for (std::uint64_t j = 0; j < len; ++j)
      idx.push_back(static_cast<std::uint32_t>(b.offset + (start + j) % b.size));
  }
}

}  // namespace gradcomp::cuda::detail
