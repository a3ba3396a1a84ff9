// signtopk: Qsparse-local-SGD's SignTop_k (algorithms.md §4.10; docs/compressors/signtopk.md).
//
// S = exact top-k of |v| (ties: lower index). C(v)_j = s * sgn+-(v_j) on S, 0 elsewhere, with
// s = ||Top_k(v)||_1 / k = sum_{j in S} |v_j| / k (accumulated in double, stored f32), the
// least-squares optimal scale on S. sgn+-(0) = +1 (bit set iff v_j < 0, so -0 is +1 too).
//
// Body: k u32 indices (strictly increasing), then packed_bytes(k, 1) bytes of sign bits (bit i
// of the LSB-first stream is the sign of index i; padding bits zero), then one f32 scale.
// Header count = k. k = 0: empty body. k >= n: dense fallback (flag kFlagDense, the n raw
// values: the exact vector, so the error-feedback memory becomes 0, §7).
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {
namespace {

bool dense_fallback(const CompressorDesc& desc, std::uint64_t k) {
  return desc.n > 0 && k >= desc.n;
}

std::uint64_t body_bytes(std::uint64_t k) {
  if (k == 0) return 0;
  return 4 * k + packed_bytes(k, 1) + 4;
}

}  // namespace

std::uint64_t signtopk_payload_bytes(const CompressorDesc& desc) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (dense_fallback(desc, k)) return kHeaderBytes + dense_body_bytes(desc.n);
  return kHeaderBytes + body_bytes(k);
}

Status signtopk_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (dense_fallback(desc, k)) return write_dense(desc, ctx, in, payload);
  GRADCOMP_TRY(new_payload(desc, ctx, k, 0, body_bytes(k), payload));
  if (k == 0) return Status::success();
  const std::vector<std::uint32_t> idx = topk_indices(in, k);
  double l1 = 0.0;  // ||Top_k(v)||_1 in double
  for (std::uint32_t j : idx) l1 += std::fabs(static_cast<double>(in[j]));
  const float scale = static_cast<float>(l1 / static_cast<double>(k));

  std::uint8_t* body = body_of(payload);
  for (std::uint64_t i = 0; i < k; ++i) store_u32(body + 4 * i, idx[i]);
  BitWriter signs(body + 4 * k);
  for (std::uint64_t i = 0; i < k; ++i) signs.put(in[idx[i]] < 0.0f ? 1u : 0u, 1);
  store_f32(body + 4 * k + packed_bytes(k, 1), scale);
  return Status::success();
}

Status signtopk_decompress(const CompressorDesc& desc, const CompressContext&,
                           const WireHeader& header, Span<const std::uint8_t> body,
                           Span<float> out) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = dense_fallback(desc, k);
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear", " but k = ", k,
                         " and n = ", desc.n, dense ? " require it" : " forbid it");
  if (dense) {
    GRADCOMP_TRY(read_dense(header, body, out));
    if (desc.nonfinite == NonfinitePolicy::kError) {
      for (std::size_t j = 0; j < out.size(); ++j) {
        GRADCOMP_CHECK_PAYLOAD(std::isfinite(out[j]), "dense value[", j, "] = ", out[j],
                               " is not finite (nonfinite=error)");
      }
    }
    return Status::success();
  }
  GRADCOMP_CHECK_PAYLOAD(header.count == k, "count ", header.count, " != k ", k);
  GRADCOMP_CHECK_PAYLOAD(body.size() == body_bytes(k), "body is ", body.size(), " bytes, expected ",
                         body_bytes(k), " for k = ", k, " (indices, sign bits, scale)");
  if (k == 0) return Status::success();
  const std::uint8_t* p = body.data();
  GRADCOMP_TRY(check_indices(p, k, desc.n));
  const std::uint8_t* sign_bits = p + 4 * k;
  GRADCOMP_CHECK_PAYLOAD(padding_is_zero(sign_bits, k, packed_bytes(k, 1)),
                         "sign padding bits after bit ", k, " are not zero");
  const float scale = load_f32(p + 4 * k + packed_bytes(k, 1));
  // The scale is a mean of absolute values: never negative (nor -0). Non-finite only under
  // nonfinite=propagate (a NaN or Inf among the top k).
  GRADCOMP_CHECK_PAYLOAD(!std::signbit(scale), "scale ", scale, " is negative");
  GRADCOMP_CHECK_PAYLOAD(std::isfinite(scale) || desc.nonfinite == NonfinitePolicy::kPropagate,
                         "scale ", scale, " is not finite (nonfinite=error)");
  BitReader signs(sign_bits);
  for (std::uint64_t i = 0; i < k; ++i) {
    out[load_u32(p + 4 * i)] = signs.get(1) ? -scale : scale;
  }
  return Status::success();
}

}  // namespace gradcomp::ref::detail
