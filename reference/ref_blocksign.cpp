// blocksign: blockwise scaled sign (algorithms.md §4.1, §8 example 1).
//   C(v)_j = s_b * sgn(v_j) for j in block b,  sgn(x) = -1 iff x < 0 (so 0 and -0 are +1)
//   scale=l1:   s_b = sum_b |v| / d_b          (the least-squares optimal scale, dist-EF-SGD)
//   scale=l2:   s_b = sqrt(sum_b v^2) / sqrt(d_b)   (DeepSpeed 1-bit; keeps the norm)
//   scale=none: no scale, decodes to +-1
// Blocks: sign_blocks(desc) (block = 0: one per tensor segment; else fixed size, shorter last).
// Body: packed_bytes(n, 1) bytes of sign bits (bit j set iff v_j < 0), then one f32 scale per
// block (none for scale=none). Header count = number of blocks. See docs/compressors/blocksign.md.
#include <cmath>

#include "ref_qsgd_common.hpp"  // qsgd::wire_scale, qsgd::check_norm: shared scale rules

namespace gradcomp::ref::detail {
namespace {

std::uint64_t blocksign_body_bytes(const CompressorDesc& desc, std::uint64_t blocks) {
  const std::uint64_t scales = desc.scale == SignScale::kNone ? 0 : blocks;
  return packed_bytes(desc.n, 1) + 4 * scales;
}

// The block scale, accumulated in double and rounded once to f32 (the value on the wire).
float block_scale(Span<const float> v, SignScale scale) {
  double acc = 0.0;
  for (float x : v) {
    const double a = static_cast<double>(x);
    acc += scale == SignScale::kL1 ? std::fabs(a) : a * a;
  }
  const double d = static_cast<double>(v.size());  // d_b >= 1: blocks are never empty
  if (scale == SignScale::kL1) return static_cast<float>(acc / d);
  return static_cast<float>(std::sqrt(acc) / std::sqrt(d));
}

}  // namespace

std::uint64_t blocksign_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + blocksign_body_bytes(desc, sign_blocks(desc).size());
}

Status blocksign_compress(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<std::uint8_t>& payload) {
  const std::vector<Segment> blocks = sign_blocks(desc);
  GRADCOMP_TRY(
      new_payload(desc, ctx, blocks.size(), 0, blocksign_body_bytes(desc, blocks.size()), payload));
  std::uint8_t* body = body_of(payload);
  BitWriter bits(body);
  for (std::size_t i = 0; i < in.size(); ++i) bits.put(in[i] < 0.0f ? 1u : 0u, 1);
  if (desc.scale == SignScale::kNone) return Status::success();
  const std::uint64_t scales_at = packed_bytes(desc.n, 1);
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    const float s = block_scale(in.subspan(blocks[b].offset, blocks[b].size), desc.scale);
    store_f32(body + scales_at + 4 * b, qsgd::wire_scale(s));
  }
  return Status::success();
}

Status blocksign_decompress(const CompressorDesc& desc, const CompressContext&,
                            const WireHeader& header, Span<const std::uint8_t> body,
                            Span<float> out) {
  const std::vector<Segment> blocks = sign_blocks(desc);
  const std::uint64_t expected = blocksign_body_bytes(desc, blocks.size());
  GRADCOMP_CHECK_PAYLOAD(header.flags == 0, "flags 0x", std::hex, int(header.flags),
                         " set, but this compressor has no dense form");
  GRADCOMP_CHECK_PAYLOAD(header.count == blocks.size(), "count ", header.count,
                         " != ", blocks.size(), " blocks");
  GRADCOMP_CHECK_PAYLOAD(body.size() == expected, "body is ", body.size(), " bytes, expected ",
                         expected);
  const std::uint64_t scales_at = packed_bytes(desc.n, 1);
  GRADCOMP_CHECK_PAYLOAD(padding_is_zero(body.data(), desc.n, scales_at),
                         "padding bits after sign bit ", desc.n, " are not zero");
  BitReader bits(body.data());
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    float s = 1.0f;  // scale=none decodes to +-1
    if (desc.scale != SignScale::kNone) {
      s = load_f32(body.data() + scales_at + 4 * b);
      GRADCOMP_TRY(qsgd::check_norm(s, desc.nonfinite, "scale", b));
    }
    for (std::uint64_t j = blocks[b].offset; j < blocks[b].offset + blocks[b].size; ++j) {
      out[j] = bits.get(1) ? -s : s;
    }
  }
  return Status::success();
}

}  // namespace gradcomp::ref::detail
