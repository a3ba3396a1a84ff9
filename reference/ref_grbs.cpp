// grbs: CSER's globally-randomized blockwise sparsifier (algorithms.md §4.9, [A-code]).
//
// For every tensor segment t (in layout order) a stream shared by all ranks decides
//   draw 0: layer selected iff u <= rho_layer          (u = uniform_double, element t)
//   draw 1: row block    b0 = uniform_below(ceil(d0 / k0)),  k0 = max(1, round(d0 * rho0))
//   draw 2: column block b1 = uniform_below(ceil(d1 / k1)),  k1 = max(1, round(d1 * rho1))
// rows [b0*k0, min((b0+1)*k0, d0)), columns likewise (ndim >= 2 only; all trailing axes are
// included); 1-D tensors use rows only. The block values are sent dense and unscaled, so no
// index goes on the wire and payloads of different ranks can be summed (allreduce).
//
// Body: the selected values, tensor by tensor, each block in row-major order, f32; header count
// = number of values, body = exactly 4 * count bytes. grbs is variable-size: the number of values
// depends on the shared draws (layer selection, shorter last block), and payload_bytes() is the
// largest possible payload (every tensor selected with a full block, max_values()). When every
// tensor is always selected whole (rho_layer = 1, k0 >= d0, k1 >= d1) the payload carries
// kFlagDense.
#include <algorithm>
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {
namespace {

// Python round() (half to even) or half away from zero, for the non-negative x = d * rho.
std::uint64_t round_count(double x, RoundMode mode) {
  const double fl = std::floor(x);
  const double frac = x - fl;  // exact: x < 2^53
  std::uint64_t r = static_cast<std::uint64_t>(fl);
  const bool up = frac > 0.5 || (frac == 0.5 && (mode == RoundMode::kHalfUp || (r & 1u) != 0));
  return up ? r + 1 : r;
}

// Block length along one axis of extent d: max(1, round(d * rho)), never more than d.
std::uint64_t axis_block(std::uint64_t d, double rho, RoundMode mode) {
  const std::uint64_t k = round_count(static_cast<double>(d) * rho, mode);
  return std::min<std::uint64_t>(std::max<std::uint64_t>(k, 1), d);
}

// One tensor seen as d0 x d1 x inner (1-D: d1 = inner = 1) and its block for this step.
struct TensorBlock {
  std::uint64_t offset = 0;  // of the segment in the flattened input
  bool matrix = false;       // ndim >= 2
  std::uint64_t d0 = 0, d1 = 1, inner = 1;
  std::uint64_t k0 = 0, k1 = 1;  // nominal block extents
  bool selected = false;
  std::uint64_t row_begin = 0, row_end = 0;
  std::uint64_t col_begin = 0, col_end = 1;

  std::uint64_t values() const {
    return selected ? (row_end - row_begin) * (col_end - col_begin) * inner : 0;
  }
  std::uint64_t max_values() const { return k0 * k1 * inner; }
  bool whole() const { return k0 >= d0 && k1 >= d1; }
  // Flattened index of element (row, col, i) of the tensor.
  std::uint64_t index(std::uint64_t row, std::uint64_t col, std::uint64_t i) const {
    return offset + (row * d1 + col) * inner + i;
  }
};

// The block extents, which depend on the descriptor only (no draws).
std::vector<TensorBlock> block_shapes(const CompressorDesc& desc) {
  std::vector<TensorBlock> blocks;
  for (const Segment& seg : tensor_segments(desc)) {
    TensorBlock b;
    b.offset = seg.offset;
    b.d0 = seg.shape[0];
    if (seg.shape.size() >= 2) {
      b.matrix = true;
      b.d1 = seg.shape[1];
      for (std::size_t a = 2; a < seg.shape.size(); ++a) b.inner *= seg.shape[a];
      b.k1 = axis_block(b.d1, desc.rho1, desc.round);
    }
    b.k0 = axis_block(b.d0, desc.rho0, desc.round);
    blocks.push_back(b);
  }
  return blocks;
}

// The blocks of this (seed, step, tensor_id): the same on every rank (kSharedRank).
std::vector<TensorBlock> draw_blocks(const CompressorDesc& desc, const CompressContext& ctx) {
  const RngStream rng(desc.seed, RngPurpose::kGrbsBlocks, ctx.step, ctx.tensor_id, kSharedRank);
  std::vector<TensorBlock> blocks = block_shapes(desc);
  for (std::size_t t = 0; t < blocks.size(); ++t) {
    TensorBlock& b = blocks[t];
    b.selected = rng.uniform_double(t, 0) <= desc.rho_layer;
    if (!b.selected) continue;
    const std::uint64_t b0 = rng.uniform_below((b.d0 + b.k0 - 1) / b.k0, t, 1);
    b.row_begin = b0 * b.k0;
    b.row_end = std::min(b.row_begin + b.k0, b.d0);  // the last block may be shorter
    if (b.matrix) {                                  // 1-D tensors have no column draw
      const std::uint64_t b1 = rng.uniform_below((b.d1 + b.k1 - 1) / b.k1, t, 2);
      b.col_begin = b1 * b.k1;
      b.col_end = std::min(b.col_begin + b.k1, b.d1);
    }
  }
  return blocks;
}

std::uint64_t max_values(const CompressorDesc& desc) {
  std::uint64_t total = 0;
  for (const TensorBlock& b : block_shapes(desc)) total += b.max_values();
  return total;
}

// Every tensor is always sent whole: the payload is the dense input (flag kFlagDense).
bool always_dense(const CompressorDesc& desc) {
  if (desc.n == 0 || desc.rho_layer < 1.0) return false;
  for (const TensorBlock& b : block_shapes(desc))
    if (!b.whole()) return false;
  return true;
}

}  // namespace

std::uint64_t grbs_payload_bytes(const CompressorDesc& desc) {
  // The largest possible payload: every tensor selected, each with a full (not last-short)
  // block. Reachable (block 0 is always full), so the bound is tight.
  return kHeaderBytes + 4 * max_values(desc);
}

Status grbs_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  const std::vector<TensorBlock> blocks = draw_blocks(desc, ctx);
  std::vector<float> values;
  for (const TensorBlock& b : blocks) {
    if (!b.selected) continue;
    for (std::uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (std::uint64_t c = b.col_begin; c < b.col_end; ++c)
        for (std::uint64_t i = 0; i < b.inner; ++i) values.push_back(in[b.index(r, c, i)]);
  }
  const std::uint8_t flags = always_dense(desc) ? kFlagDense : 0;
  GRADCOMP_TRY(new_payload(desc, ctx, values.size(), flags, 4 * values.size(), payload));
  std::uint8_t* body = body_of(payload);
  for (std::size_t j = 0; j < values.size(); ++j) store_f32(body + 4 * j, values[j]);
  return Status::success();
}

Status grbs_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                       const WireHeader& header, Span<const std::uint8_t> body, Span<float> out) {
  const bool dense = always_dense(desc);
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear", " but the descriptor ",
                         dense ? "always selects every tensor whole" : "selects blocks");
  // The receiver regenerates the block set from the shared stream; nothing else is trusted.
  const std::vector<TensorBlock> blocks = draw_blocks(desc, ctx);
  std::uint64_t count = 0;
  for (const TensorBlock& b : blocks) count += b.values();
  GRADCOMP_CHECK_PAYLOAD(header.count == count, "count ", header.count, " but the shared stream ",
                         "selects ", count, " values at step ", ctx.step);
  GRADCOMP_CHECK_PAYLOAD(body.size() == 4 * count, "body is ", body.size(), " bytes, expected ",
                         4 * count, " (", count, " values)");
  const bool finite_only = desc.nonfinite == NonfinitePolicy::kError;
  std::uint64_t j = 0;
  for (const TensorBlock& b : blocks) {
    if (!b.selected) continue;
    for (std::uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (std::uint64_t c = b.col_begin; c < b.col_end; ++c)
        for (std::uint64_t i = 0; i < b.inner; ++i, ++j) {
          const float v = load_f32(body.data() + 4 * j);
          GRADCOMP_CHECK_PAYLOAD(!finite_only || std::isfinite(v), "value[", j, "] = ", v,
                                 " is not finite (nonfinite=error)");
          out[b.index(r, c, i)] = v;
        }
  }
  return Status::success();
}

}  // namespace gradcomp::ref::detail
