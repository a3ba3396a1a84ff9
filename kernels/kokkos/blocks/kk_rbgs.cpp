// rbgs on Kokkos (docs/compressors/rbgs.md): one shared draw per segment (host), then the block
// (and its wrapped part) is a run gather / run scatter (kk_runs.cpp). Same wire bytes and
// Status codes as reference/ref_rbgs.cpp; the block rule below restates the reference's.
#include <algorithm>
#include <cmath>

#include "kk_blocks.hpp"

namespace gradcomp::kk::blocks {
namespace {

using namespace gradcomp::kk::sel;

// floor/ceil with the 1e-12 relative guard of sparsifier_k() (decimal densities).
std::uint64_t guarded_floor(double x) {
  return static_cast<std::uint64_t>(std::floor(x + x * 1e-12));
}
std::uint64_t guarded_ceil(double x) {
  return static_cast<std::uint64_t>(std::ceil(x - x * 1e-12));
}

struct SegBlock {
  std::uint64_t offset = 0, size = 0, nominal = 0, start = 0, len = 0;
};

std::vector<SegBlock> shapes(const CompressorDesc& desc) {
  std::vector<SegBlock> out;
  for (const Segment& seg : tensor_segments(desc)) {
    SegBlock b;
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

std::vector<SegBlock> draw(const CompressorDesc& desc, const CompressContext& ctx) {
  const RngStream rng(desc.seed, RngPurpose::kRbgsBlocks, ctx.step, ctx.tensor_id, kSharedRank);
  std::vector<SegBlock> blocks = shapes(desc);
  for (std::size_t t = 0; t < blocks.size(); ++t) {
    SegBlock& b = blocks[t];
    if (b.nominal == 0) continue;
    if (desc.align == RbgsAlign::kWrap) {
      b.start = rng.uniform_below(b.size, t, 0);
      b.len = b.nominal;
    } else {
      b.start = rng.uniform_below((b.size + b.nominal - 1) / b.nominal, t, 0) * b.nominal;
      b.len = std::min(b.nominal, b.size - b.start);
    }
  }
  return blocks;
}

bool always_dense(const CompressorDesc& desc) {
  const std::vector<SegBlock> blocks = shapes(desc);
  if (blocks.empty()) return false;
  for (const SegBlock& b : blocks)
    if (b.nominal < b.size) return false;
  return true;
}

// Runs in body order: the dense form is the input in natural order; otherwise per segment the
// block from its start to the segment end, then the wrapped part from the segment start.
std::vector<Run> runs_of(const CompressorDesc& desc, const CompressContext& ctx, bool dense,
                         std::uint64_t& count) {
  std::vector<Run> runs;
  count = 0;
  if (dense) {
    runs.push_back(Run{0, 0, desc.n});
    count = desc.n;
    return runs;
  }
  for (const SegBlock& b : draw(desc, ctx)) {
    const std::uint64_t head = std::min(b.len, b.size - b.start);
    if (head > 0) runs.push_back(Run{b.offset + b.start, count, head});
    if (b.len > head) runs.push_back(Run{b.offset, count + head, b.len - head});
    count += b.len;
  }
  return runs;
}

std::uint64_t rbgs_payload_bytes(const CompressorDesc& desc) {
  std::uint64_t total = 0;
  for (const SegBlock& b : shapes(desc)) total += b.nominal;
  return kHeaderBytes + 4 * total;
}

Status rbgs_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const bool dense = always_dense(desc);
  if (dense) return write_dense(desc, ctx, in, payload);  // copy with the check fused
  std::uint64_t count = 0;
  const std::vector<Run> runs = runs_of(desc, ctx, false, count);
  return write_runs_payload(desc, ctx, in, runs, count, 0, payload);
}

template <bool kAccumulate>
Status rbgs_decode(const CompressorDesc& desc, const CompressContext& ctx,
                   Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  auto fail = [&](const Status& st) { return make_status(st.code(), "rbgs: ", st.message()); };
  const bool dense = always_dense(desc);
  if (((h.flags & kFlagDense) != 0) != dense)
    return fail(make_status(StatusCode::kCorruptPayload, "dense flag is ",
                            (h.flags & kFlagDense) ? "set" : "clear",
                            " but density = ", desc.density,
                            dense ? " selects every segment whole" : " selects blocks"));
  std::uint64_t count = 0;
  const std::vector<Run> runs = runs_of(desc, ctx, dense, count);
  if (h.count != count)
    return fail(
        make_status(StatusCode::kCorruptPayload, "count ", h.count,
                    dense ? " but a dense payload has n = " : " but the shared stream selects ",
                    count, " values"));
  return read_runs_payload("rbgs", desc, h, payload, runs, count, kAccumulate, alpha, out);
}

Status rbgs_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, Span<float> out) {
  return rbgs_decode<false>(desc, ctx, payload, 1.0f, out);
}

}  // namespace

std::vector<Run> rbgs_runs(const CompressorDesc& desc, const CompressContext& ctx) {
  std::uint64_t count = 0;
  return runs_of(desc, ctx, always_dense(desc), count);
}

void register_rbgs(KkTable& table) {
  KkOps o;
  o.ops.payload_bytes = rbgs_payload_bytes;
  o.ops.compress = rbgs_compress;
  o.ops.decompress = rbgs_decompress;
  o.ops.decompress_accumulate = rbgs_decode<true>;
  table[CompressorKind::kRbgs] = o;
}

}  // namespace gradcomp::kk::blocks
