// rbgs: random block per tensor segment (GMC's RBGS via Xu & Huang's URSB rule, algorithms.md
// §4.9; the rule itself is [A-code for DEF], its use for GMC is [P]).
//
// align=wrap (default): per segment of n_t elements, k = max(1, floor(density * n_t)) (density
// 0: k = 0, nothing is sent) and a start s = uniform_below(n_t) (element t, draw 0) from the
// stream shared by all ranks; the block is [s, min(s + k, n_t)) followed by the wrapped part
// [0, k - (n_t - s)). align=partition: nb = ceil(1 / density) aligned blocks of
// size bs = ceil(n_t / nb); block b = uniform_below(ceil(n_t / bs)) (element t, draw 0), the last
// block shorter.
//
// Body: the selected values, segment by segment, each block in block order (s .. end, then the
// wrapped part), f32; header count = number of values, body = exactly 4 * count bytes.
// align=wrap always sends sum_t k_t values; align=partition can select a shorter last block, so
// rbgs is variable-size and payload_bytes() is the largest payload (sum_t bs_t values). When
// every segment is always sent whole the payload carries kFlagDense (the body is then the input
// in natural order).
#include <algorithm>
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {
namespace {

// floor(x) and ceil(x) with the same 1e-12 relative guard as sparsifier_k(), so that decimal
// densities such as 0.3 * 10 or 1 / 0.001 give the integer the user meant.
std::uint64_t guarded_floor(double x) {
  return static_cast<std::uint64_t>(std::floor(x + x * 1e-12));
}
std::uint64_t guarded_ceil(double x) {
  return static_cast<std::uint64_t>(std::ceil(x - x * 1e-12));
}

// One segment and its block: `len` values starting at `start`, wrapping past the end.
struct SegBlock {
  std::uint64_t offset = 0, size = 0;  // the segment in the flattened input
  std::uint64_t nominal = 0;           // k (wrap) or the aligned block size bs (partition)
  std::uint64_t start = 0, len = 0;    // this step's block
  // Flattened index of the j-th value of the block (j < len).
  std::uint64_t index(std::uint64_t j) const { return offset + (start + j) % size; }
};

std::vector<SegBlock> block_shapes(const CompressorDesc& desc) {
  std::vector<SegBlock> blocks;
  for (const Segment& seg : tensor_segments(desc)) {
    SegBlock b;
    b.offset = seg.offset;
    b.size = seg.size;
    const double x = desc.density * static_cast<double>(seg.size);
    if (desc.density <= 0.0) {
      b.nominal = 0;  // density 0: the whole segment stays in the error memory
    } else if (desc.align == RbgsAlign::kWrap) {
      b.nominal = std::min(std::max<std::uint64_t>(guarded_floor(x), 1), seg.size);
    } else {
      const std::uint64_t nb = std::max<std::uint64_t>(guarded_ceil(1.0 / desc.density), 1);
      b.nominal = (seg.size + nb - 1) / nb;  // >= 1 because seg.size >= 1
    }
    blocks.push_back(b);
  }
  return blocks;
}

// This step's blocks; the stream is shared by every rank (kSharedRank), so all ranks agree.
std::vector<SegBlock> draw_blocks(const CompressorDesc& desc, const CompressContext& ctx) {
  const RngStream rng(desc.seed, RngPurpose::kRbgsBlocks, ctx.step, ctx.tensor_id, kSharedRank);
  std::vector<SegBlock> blocks = block_shapes(desc);
  for (std::size_t t = 0; t < blocks.size(); ++t) {
    SegBlock& b = blocks[t];
    if (b.nominal == 0) continue;
    if (desc.align == RbgsAlign::kWrap) {
      b.start = rng.uniform_below(b.size, t, 0);  // any offset; the block wraps around
      b.len = b.nominal;
    } else {
      // Only non-empty aligned blocks are drawn (ceil(n_t / bs) of them, <= nb).
      const std::uint64_t blocks_in_segment = (b.size + b.nominal - 1) / b.nominal;
      b.start = rng.uniform_below(blocks_in_segment, t, 0) * b.nominal;
      b.len = std::min(b.nominal, b.size - b.start);  // the last block may be shorter
    }
  }
  return blocks;
}

std::uint64_t max_values(const CompressorDesc& desc) {
  std::uint64_t total = 0;
  for (const SegBlock& b : block_shapes(desc)) total += b.nominal;
  return total;
}

// Every segment is always sent whole (k_t >= n_t): dense payload, flag kFlagDense.
bool always_dense(const CompressorDesc& desc) {
  const std::vector<SegBlock> blocks = block_shapes(desc);
  if (blocks.empty()) return false;
  for (const SegBlock& b : blocks)
    if (b.nominal < b.size) return false;
  return true;
}

}  // namespace

std::uint64_t rbgs_payload_bytes(const CompressorDesc& desc) {
  // The largest possible payload: a full block (k_t or bs_t values) in every segment. Exact for
  // align=wrap; for align=partition reached whenever no segment draws its shorter last block.
  return kHeaderBytes + 4 * max_values(desc);
}

Status rbgs_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  const bool dense = always_dense(desc);
  std::vector<float> values;
  if (dense) {
    values.assign(in.begin(), in.end());  // natural order, not rotated by the start offset
  } else {
    for (const SegBlock& b : draw_blocks(desc, ctx))
      for (std::uint64_t j = 0; j < b.len; ++j) values.push_back(in[b.index(j)]);
  }
  GRADCOMP_TRY(
      new_payload(desc, ctx, values.size(), dense ? kFlagDense : 0, 4 * values.size(), payload));
  std::uint8_t* body = body_of(payload);
  for (std::size_t j = 0; j < values.size(); ++j) store_f32(body + 4 * j, values[j]);
  return Status::success();
}

Status rbgs_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                       const WireHeader& header, Span<const std::uint8_t> body, Span<float> out) {
  const bool dense = always_dense(desc);
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear",
                         " but density = ", desc.density,
                         dense ? " selects every segment whole" : " selects blocks");
  const bool finite_only = desc.nonfinite == NonfinitePolicy::kError;
  if (dense) {
    GRADCOMP_CHECK_PAYLOAD(header.count == desc.n, "dense payload count ", header.count, " != n ",
                           desc.n);
    GRADCOMP_CHECK_PAYLOAD(body.size() == 4 * desc.n, "dense body is ", body.size(),
                           " bytes, expected ", 4 * desc.n);
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = load_f32(body.data() + 4 * i);
      GRADCOMP_CHECK_PAYLOAD(!finite_only || std::isfinite(out[i]), "value[", i, "] = ", out[i],
                             " is not finite (nonfinite=error)");
    }
    return Status::success();
  }
  // The receiver regenerates the blocks from the shared stream; nothing else is trusted.
  const std::vector<SegBlock> blocks = draw_blocks(desc, ctx);
  std::uint64_t count = 0;
  for (const SegBlock& b : blocks) count += b.len;
  GRADCOMP_CHECK_PAYLOAD(header.count == count, "count ", header.count, " but the shared stream ",
                         "selects ", count, " values at step ", ctx.step);
  GRADCOMP_CHECK_PAYLOAD(body.size() == 4 * count, "body is ", body.size(), " bytes, expected ",
                         4 * count, " (", count, " values)");
  std::uint64_t pos = 0;
  for (const SegBlock& b : blocks) {
    for (std::uint64_t j = 0; j < b.len; ++j, ++pos) {
      const float v = load_f32(body.data() + 4 * pos);
      GRADCOMP_CHECK_PAYLOAD(!finite_only || std::isfinite(v), "value[", pos, "] = ", v,
                             " is not finite (nonfinite=error)");
      out[b.index(j)] = v;
    }
  }
  return Status::success();
}

}  // namespace gradcomp::ref::detail
