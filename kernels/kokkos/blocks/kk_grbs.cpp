// grbs on Kokkos (docs/compressors/grbs.md): the shared block draws are a few Philox calls per
// tensor (host); the selected block of a tensor is a set of contiguous row pieces, so compress
// is a run gather and decode a run scatter (kk_runs.cpp). Same wire bytes and Status codes as
// reference/ref_grbs.cpp; the block arithmetic below is the reference's rule, restated.
#include <algorithm>
#include <cmath>

#include "kk_blocks.hpp"

namespace gradcomp::kk::blocks {
namespace {

using namespace gradcomp::kk::sel;

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

struct Block {
  std::uint64_t offset = 0;
  bool matrix = false;
  std::uint64_t d0 = 0, d1 = 1, inner = 1;
  std::uint64_t k0 = 0, k1 = 1;
  bool selected = false;
  std::uint64_t r0 = 0, r1 = 0, c0 = 0, c1 = 1;
  std::uint64_t values() const { return selected ? (r1 - r0) * (c1 - c0) * inner : 0; }
};

std::vector<Block> shapes(const CompressorDesc& desc) {
  std::vector<Block> out;
  for (const Segment& seg : tensor_segments(desc)) {
    Block b;
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

std::vector<Block> draw(const CompressorDesc& desc, const CompressContext& ctx) {
  const RngStream rng(desc.seed, RngPurpose::kGrbsBlocks, ctx.step, ctx.tensor_id, kSharedRank);
  std::vector<Block> blocks = shapes(desc);
  for (std::size_t t = 0; t < blocks.size(); ++t) {
    Block& b = blocks[t];
    b.selected = rng.uniform_double(t, 0) <= desc.rho_layer;
    if (!b.selected) continue;
    b.r0 = rng.uniform_below((b.d0 + b.k0 - 1) / b.k0, t, 1) * b.k0;
    b.r1 = std::min(b.r0 + b.k0, b.d0);
    if (b.matrix) {
      b.c0 = rng.uniform_below((b.d1 + b.k1 - 1) / b.k1, t, 2) * b.k1;
      b.c1 = std::min(b.c0 + b.k1, b.d1);
    }
  }
  return blocks;
}

// The selection as runs in body order: one run per selected row (its columns and all trailing
// axes are contiguous in row-major order), merged with the previous run when both continue
// it: whole rows (every 1-D tensor) form one run, not one per element (2^19 one-element runs
// at n = 2^24 made grbs per-run overhead bound).
std::vector<Run> runs_of(const std::vector<Block>& blocks, std::uint64_t& count) {
  std::vector<Run> runs;
  count = 0;
  for (const Block& b : blocks) {
    if (!b.selected) continue;
    const std::uint64_t len = (b.c1 - b.c0) * b.inner;
    for (std::uint64_t r = b.r0; r < b.r1; ++r) {
      const std::uint64_t at = b.offset + (r * b.d1 + b.c0) * b.inner;
      if (!runs.empty() && runs.back().at + runs.back().len == at &&
          runs.back().pos + runs.back().len == count) {
        runs.back().len += len;
      } else {
        runs.push_back(Run{at, count, len});
      }
      count += len;
    }
  }
  return runs;
}

bool always_dense(const CompressorDesc& desc) {
  if (desc.n == 0 || desc.rho_layer < 1.0) return false;
  for (const Block& b : shapes(desc))
    if (b.k0 < b.d0 || b.k1 < b.d1) return false;
  return true;
}

std::uint64_t grbs_payload_bytes(const CompressorDesc& desc) {
  std::uint64_t total = 0;
  for (const Block& b : shapes(desc)) total += b.k0 * b.k1 * b.inner;
  return kHeaderBytes + 4 * total;
}

Status grbs_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  std::uint64_t count = 0;
  const std::vector<Run> runs = runs_of(draw(desc, ctx), count);
  return write_runs_payload(desc, ctx, in, runs, count, always_dense(desc) ? kFlagDense : 0,
                            payload);
}

template <bool kAccumulate>
Status grbs_decode(const CompressorDesc& desc, const CompressContext& ctx,
                   Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  auto fail = [&](const Status& st) { return make_status(st.code(), "grbs: ", st.message()); };
  const bool dense = always_dense(desc);
  if (((h.flags & kFlagDense) != 0) != dense)
    return fail(make_status(StatusCode::kCorruptPayload, "dense flag is ",
                            (h.flags & kFlagDense) ? "set" : "clear", " but the descriptor ",
                            dense ? "always selects every tensor whole" : "selects blocks"));
  std::uint64_t count = 0;
  const std::vector<Run> runs = runs_of(draw(desc, ctx), count);
  if (h.count != count)
    return fail(make_status(StatusCode::kCorruptPayload, "count ", h.count,
                            " but the shared stream selects ", count, " values at step ",
                            ctx.step));
  return read_runs_payload("grbs", desc, h, payload, runs, count, kAccumulate, alpha, out);
}

Status grbs_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, Span<float> out) {
  return grbs_decode<false>(desc, ctx, payload, 1.0f, out);
}

}  // namespace

std::vector<Run> grbs_runs(const CompressorDesc& desc, const CompressContext& ctx) {
  std::uint64_t count = 0;
  return runs_of(draw(desc, ctx), count);
}

void register_grbs(KkTable& table) {
  KkOps o;
  o.ops.payload_bytes = grbs_payload_bytes;
  o.ops.compress = grbs_compress;
  o.ops.decompress = grbs_decompress;
  o.ops.decompress_accumulate = grbs_decode<true>;
  table[CompressorKind::kGrbs] = o;
}

}  // namespace gradcomp::kk::blocks
