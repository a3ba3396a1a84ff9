// sign: 1 bit per element, bit set iff v < 0 (so sgn(0) = sgn(-0) = +1), no scale.
// Body: ceil(n/32) little-endian u32 words, LSB-first, zero padding. Decodes to +1 / -1.
#include "ref_internal.hpp"

namespace gradcomp::ref::detail {

std::uint64_t sign_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + packed_bytes(desc.n, 1);
}

Status sign_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  GRADCOMP_TRY(new_payload(desc, ctx, desc.n, 0, packed_bytes(desc.n, 1), payload));
  BitWriter bits(body_of(payload));
  for (std::size_t i = 0; i < in.size(); ++i) bits.put(in[i] < 0.0f ? 1u : 0u, 1);
  return Status::success();
}

Status sign_decompress(const CompressorDesc& desc, const CompressContext&, const WireHeader& header,
                       Span<const std::uint8_t> body, Span<float> out) {
  GRADCOMP_CHECK_PAYLOAD(header.count == desc.n, "count ", header.count, " != n ", desc.n);
  GRADCOMP_CHECK_PAYLOAD(body.size() == packed_bytes(desc.n, 1), "body is ", body.size(),
                         " bytes, expected ", packed_bytes(desc.n, 1), " for ", desc.n, " bits");
  GRADCOMP_CHECK_PAYLOAD(padding_is_zero(body.data(), desc.n, body.size()),
                         "padding bits after bit ", desc.n, " are not zero");
  BitReader bits(body.data());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = bits.get(1) ? -1.0f : 1.0f;
  return Status::success();
}

}  // namespace gradcomp::ref::detail
