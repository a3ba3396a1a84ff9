// identity, fp16, bf16: elementwise storage formats. Body: n values of 4 / 2 / 2 bytes.
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {

std::uint64_t identity_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + 4 * desc.n;
}

Status identity_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
  GRADCOMP_TRY(new_payload(desc, ctx, desc.n, 0, 4 * desc.n, payload));
  for (std::size_t i = 0; i < in.size(); ++i) store_f32(body_of(payload) + 4 * i, in[i]);
  return Status::success();
}

Status identity_decompress(const CompressorDesc& desc, const CompressContext&,
                           const WireHeader& header, Span<const std::uint8_t> body,
                           Span<float> out) {
  GRADCOMP_CHECK_PAYLOAD(header.count == desc.n, "count ", header.count, " != n ", desc.n);
  GRADCOMP_CHECK_PAYLOAD(body.size() == 4 * desc.n, "body is ", body.size(), " bytes, expected ",
                         4 * desc.n);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_f32(body.data() + 4 * i);
  return Status::success();
}

namespace {

template <std::uint16_t (*Encode)(float), float (*Decode)(std::uint16_t)>
struct HalfFormat {
  static std::uint64_t payload_bytes(const CompressorDesc& desc) {
    return kHeaderBytes + 2 * desc.n;
  }
  static Status compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
    std::vector<std::uint8_t> out;
    GRADCOMP_TRY(new_payload(desc, ctx, desc.n, 0, 2 * desc.n, out));
    for (std::size_t i = 0; i < in.size(); ++i) {
      const std::uint16_t h = Encode(in[i]);
      // A finite input that overflows to Inf would poison error feedback downstream.
      if (desc.nonfinite == NonfinitePolicy::kError && std::isfinite(in[i]) &&
          !std::isfinite(Decode(h))) {
        return make_status(StatusCode::kNonFinite, "input[", i, "] = ", in[i],
                           " overflows the format to Inf (nonfinite=error)");
      }
      store_u16(body_of(out) + 2 * i, h);
    }
    payload.swap(out);
    return Status::success();
  }
  static Status decompress(const CompressorDesc& desc, const WireHeader& header,
                           Span<const std::uint8_t> body, Span<float> out) {
    GRADCOMP_CHECK_PAYLOAD(header.count == desc.n, "count ", header.count, " != n ", desc.n);
    GRADCOMP_CHECK_PAYLOAD(body.size() == 2 * desc.n, "body is ", body.size(), " bytes, expected ",
                           2 * desc.n);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = Decode(load_u16(body.data() + 2 * i));
    return Status::success();
  }
};

std::uint16_t encode_f16(float f) { return float_to_f16_bits(f); }
float decode_f16(std::uint16_t h) { return f16_bits_to_float(h); }
std::uint16_t encode_bf16(float f) { return float_to_bf16_bits(f); }
float decode_bf16(std::uint16_t h) { return bf16_bits_to_float(h); }
using Fp16 = HalfFormat<encode_f16, decode_f16>;
using Bf16 = HalfFormat<encode_bf16, decode_bf16>;

}  // namespace

std::uint64_t fp16_payload_bytes(const CompressorDesc& desc) { return Fp16::payload_bytes(desc); }
Status fp16_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  return Fp16::compress(desc, ctx, in, payload);
}
Status fp16_decompress(const CompressorDesc& desc, const CompressContext&, const WireHeader& header,
                       Span<const std::uint8_t> body, Span<float> out) {
  return Fp16::decompress(desc, header, body, out);
}

std::uint64_t bf16_payload_bytes(const CompressorDesc& desc) { return Bf16::payload_bytes(desc); }
Status bf16_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  return Bf16::compress(desc, ctx, in, payload);
}
Status bf16_decompress(const CompressorDesc& desc, const CompressContext&, const WireHeader& header,
                       Span<const std::uint8_t> body, Span<float> out) {
  return Bf16::decompress(desc, header, body, out);
}

}  // namespace gradcomp::ref::detail
