// qsgd: QSGD stochastic quantization to s levels per bucket (algorithms.md §4.3, §8 example 4).
// Body: packed_bytes(n, 1 + L) bytes of per-element codes (bit 0 = sign, bits 1..L = level,
// L = ceil(log2(s + 1))), then one f32 norm per bucket. Header count = number of buckets.
// Rounding uniforms: RngStream(seed, kQsgdRounding, step, tensor_id, rank).uniform_float(j),
// j = global element index, draw 0. See docs/compressors/qsgd.md.
#include <cmath>

#include "ref_qsgd_common.hpp"

namespace gradcomp::ref::detail {

namespace qsgd {

float bucket_norm(Span<const float> v, QsgdNorm norm) {
  double acc = 0.0;
  bool has_nan = false;
  for (float x : v) {
    const double a = std::fabs(static_cast<double>(x));
    has_nan |= std::isnan(a);
    if (norm == QsgdNorm::kL2) {
      acc += a * a;
    } else if (a > acc) {
      acc = a;
    }
  }
  // `a > acc` skips NaN; make a NaN element visible (only reachable under nonfinite=propagate).
  if (has_nan) return std::nanf("");
  return static_cast<float>(norm == QsgdNorm::kL2 ? std::sqrt(acc) : acc);
}

std::uint32_t quantize(float v, float norm, std::uint32_t levels, float u) {
  if (norm == 0.0f) return 0;  // all-zero bucket: level 0, no division (§4.3 corner cases)
  const double s = static_cast<double>(levels);
  const double r = s * std::fabs(static_cast<double>(v)) / static_cast<double>(norm);
  std::uint32_t level;
  if (std::isnan(r)) {
    level = levels;  // non-finite input under nonfinite=propagate: keep it visible
  } else if (r >= s) {
    // |v| == N (always the arg-max under norm=max): level s, no randomness. `>=` also guards
    // against r exceeding s by a rounding of s * |v| for huge s; |v| <= N always holds.
    level = levels;
  } else {
    const double l = std::floor(r);
    const double p = r - l;
    level = static_cast<std::uint32_t>(l) + (static_cast<double>(u) < p ? 1u : 0u);
  }
  const std::uint32_t sign = (v < 0.0f && level > 0) ? 1u : 0u;  // canonical: +0 for level 0
  return sign | (level << 1);
}

float dequantize(std::uint32_t code, float norm, std::uint32_t levels, double factor) {
  const double level = static_cast<double>(code >> 1);
  const double signed_level = (code & 1u) ? -level : level;
  // Left to right in double: N * (+-level) / s * factor; factor 1 is exact.
  return static_cast<float>(static_cast<double>(norm) * signed_level / static_cast<double>(levels) *
                            factor);
}

}  // namespace qsgd

namespace {
std::uint64_t qsgd_body_bytes(const CompressorDesc& desc, std::uint64_t buckets) {
  return packed_bytes(desc.n, 1 + qsgd_level_bits(desc.levels)) + 4 * buckets;
}
}  // namespace

std::uint64_t qsgd_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + qsgd_body_bytes(desc, qsgd_buckets(desc).size());
}

Status qsgd_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  const std::vector<Segment> buckets = qsgd_buckets(desc);
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const std::uint64_t codes_bytes = packed_bytes(desc.n, bits);
  GRADCOMP_TRY(
      new_payload(desc, ctx, buckets.size(), 0, qsgd_body_bytes(desc, buckets.size()), payload));
  std::uint8_t* body = body_of(payload);
  // Independent (per-rank) rounding randomness, drawn by global element index.
  const RngStream rng(desc.seed, RngPurpose::kQsgdRounding, ctx.step, ctx.tensor_id, ctx.rank);
  BitWriter writer(body);
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    const Segment& bk = buckets[b];
    const float norm = qsgd::bucket_norm(in.subspan(bk.offset, bk.size), desc.norm);
    store_f32(body + codes_bytes + 4 * b, qsgd::wire_scale(norm));
    for (std::uint64_t j = bk.offset; j < bk.offset + bk.size; ++j) {
      writer.put(qsgd::quantize(in[j], norm, desc.levels, rng.uniform_float(j)), bits);
    }
  }
  return Status::success();
}

Status qsgd_decompress(const CompressorDesc& desc, const CompressContext&, const WireHeader& header,
                       Span<const std::uint8_t> body, Span<float> out) {
  const std::vector<Segment> buckets = qsgd_buckets(desc);
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const std::uint64_t codes_bytes = packed_bytes(desc.n, bits);
  GRADCOMP_CHECK_PAYLOAD(header.flags == 0, "flags 0x", std::hex, int(header.flags),
                         " set, but this compressor has no dense form");
  GRADCOMP_CHECK_PAYLOAD(header.count == buckets.size(), "count ", header.count,
                         " != ", buckets.size(), " buckets");
  GRADCOMP_CHECK_PAYLOAD(body.size() == qsgd_body_bytes(desc, buckets.size()), "body is ",
                         body.size(), " bytes, expected ", qsgd_body_bytes(desc, buckets.size()),
                         " (", desc.n, " codes of ", bits, " bits + ", buckets.size(), " norms)");
  GRADCOMP_CHECK_PAYLOAD(padding_is_zero(body.data(), desc.n * bits, codes_bytes),
                         "padding bits after code ", desc.n, " are not zero");
  BitReader reader(body.data());
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    const Segment& bk = buckets[b];
    const float norm = load_f32(body.data() + codes_bytes + 4 * b);
    GRADCOMP_TRY(qsgd::check_norm(norm, desc.nonfinite, "norm", b));
    GRADCOMP_TRY(qsgd::decode_codes(reader, bk.offset, bk.size, norm, desc.levels, 1.0,
                                    [&](std::uint64_t i, float x) { out[bk.offset + i] = x; }));
  }
  return Status::success();
}

}  // namespace gradcomp::ref::detail
