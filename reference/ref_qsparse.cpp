// qsgd_topk / qsgd_randk: the Qsparse-local-SGD compositions Q_s o Top_k and Q_s o Rand_k
// (algorithms.md §4.10 [R]).
//   k = sparsifier_k(desc, n); S = topk_indices(v, k) (exact, ties to the lower index) or
//   random_k_indices(RngStream(seed, kRandKIndices, step, tensor_id, indices=shared ? kSharedRank
//   : rank), n, k); then QSGD with `levels` and `norm` over the k selected values as ONE bucket,
//   rounding uniform of the element at global index j: RngStream(seed, kQsgdRounding, step,
//   tensor_id, rank).uniform_float(j). scaled=1 multiplies the decoded values by 1/(1 + beta),
//   beta = min(k/s^2, sqrt(k)/s).
// Body: k u32 indices (strictly increasing; omitted for qsgd_randk indices=shared, where the
// decoder regenerates them), packed_bytes(k, 1 + L) bytes of codes, one f32 norm. count = k.
// k = 0: empty body. k >= n > 0: dense fallback, n raw f32 values with kFlagDense (exact, not
// quantized, not scaled). See docs/compressors/qsgd_topk.md and qsgd_randk.md.
#include <algorithm>
#include <cmath>

#include "ref_qsgd_common.hpp"

namespace gradcomp::ref::detail {
namespace {

bool sends_indices(const CompressorDesc& desc) {
  return desc.kind == CompressorKind::kQsgdTopK || desc.indices == IndexMode::kPrivate;
}

bool is_dense(const CompressorDesc& desc, std::uint64_t k) { return desc.n > 0 && k >= desc.n; }

std::uint64_t qsparse_body_bytes(const CompressorDesc& desc, std::uint64_t k) {
  if (is_dense(desc, k)) return dense_body_bytes(desc.n);
  if (k == 0) return 0;
  const std::uint64_t index_bytes = sends_indices(desc) ? 4 * k : 0;
  return index_bytes + packed_bytes(k, 1 + qsgd_level_bits(desc.levels)) + 4;
}

// The random support of qsgd_randk: shared by all ranks or private to this rank.
std::vector<std::uint32_t> randk_support(const CompressorDesc& desc, const CompressContext& ctx,
                                         std::uint64_t k) {
  const std::uint32_t rank = desc.indices == IndexMode::kShared ? kSharedRank : ctx.rank;
  const RngStream stream(desc.seed, RngPurpose::kRandKIndices, ctx.step, ctx.tensor_id, rank);
  return random_k_indices(stream, desc.n, k);
}

// 1 / (1 + beta_{k,s}), beta = min(k / s^2, sqrt(k) / s), in double.
double scaled_factor(std::uint64_t k, std::uint32_t levels) {
  const double kd = static_cast<double>(k), s = static_cast<double>(levels);
  const double beta = std::min(kd / (s * s), std::sqrt(kd) / s);
  return 1.0 / (1.0 + beta);
}

Status qsparse_compress(const CompressorDesc& desc, const CompressContext& ctx,
                        Span<const float> in, std::vector<std::uint8_t>& payload) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (is_dense(desc, k)) return write_dense(desc, ctx, in, payload);
  GRADCOMP_TRY(new_payload(desc, ctx, k, 0, qsparse_body_bytes(desc, k), payload));
  if (k == 0) return Status::success();  // nothing sent; EF keeps the whole vector
  const std::vector<std::uint32_t> support =
      desc.kind == CompressorKind::kQsgdTopK ? topk_indices(in, k) : randk_support(desc, ctx, k);
  std::uint8_t* body = body_of(payload);
  std::uint8_t* p = body;
  if (sends_indices(desc)) {
    for (std::uint32_t j : support) {
      store_u32(p, j);
      p += 4;
    }
  }
  // One bucket: the norm over the k selected values.
  std::vector<float> selected(k);
  for (std::uint64_t i = 0; i < k; ++i) selected[i] = in[support[i]];
  const float norm = qsgd::bucket_norm(selected, desc.norm);
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const RngStream rng(desc.seed, RngPurpose::kQsgdRounding, ctx.step, ctx.tensor_id, ctx.rank);
  BitWriter writer(p);
  for (std::uint64_t i = 0; i < k; ++i) {
    // Uniform keyed by the global index, so the rounding of an element does not depend on
    // which other elements were selected.
    writer.put(qsgd::quantize(selected[i], norm, desc.levels, rng.uniform_float(support[i])), bits);
  }
  store_f32(p + packed_bytes(k, bits), qsgd::wire_scale(norm));
  return Status::success();
}

Status qsparse_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                          const WireHeader& header, Span<const std::uint8_t> body,
                          Span<float> out) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = is_dense(desc, k);
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear", " but k = ", k,
                         " and n = ", desc.n, dense ? " require it" : " forbid it");
  if (dense) return read_dense(header, body, out);
  GRADCOMP_CHECK_PAYLOAD(header.count == k, "count ", header.count, " != k ", k);
  const std::uint64_t expected = qsparse_body_bytes(desc, k);
  GRADCOMP_CHECK_PAYLOAD(body.size() == expected, "body is ", body.size(), " bytes, expected ",
                         expected, " for k = ", k);
  if (k == 0) return Status::success();
  std::vector<std::uint32_t> support(k);
  const std::uint8_t* p = body.data();
  if (sends_indices(desc)) {
    GRADCOMP_TRY(check_indices(p, k, desc.n));
    for (std::uint64_t i = 0; i < k; ++i) support[i] = load_u32(p + 4 * i);
    p += 4 * k;
  } else {
    support = randk_support(desc, ctx, k);
  }
  const std::uint32_t bits = 1 + qsgd_level_bits(desc.levels);
  const std::uint64_t codes_bytes = packed_bytes(k, bits);
  GRADCOMP_CHECK_PAYLOAD(padding_is_zero(p, k * bits, codes_bytes), "padding bits after code ", k,
                         " are not zero");
  const float norm = load_f32(p + codes_bytes);
  GRADCOMP_TRY(qsgd::check_norm(norm, desc.nonfinite, "norm", 0));
  const double factor = desc.scaled ? scaled_factor(k, desc.levels) : 1.0;
  BitReader reader(p);
  return qsgd::decode_codes(reader, 0, k, norm, desc.levels, factor,
                            [&](std::uint64_t i, float x) { out[support[i]] = x; });
}

}  // namespace

std::uint64_t qsgd_topk_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + qsparse_body_bytes(desc, sparsifier_k(desc, desc.n));
}
Status qsgd_topk_compress(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<std::uint8_t>& payload) {
  return qsparse_compress(desc, ctx, in, payload);
}
Status qsgd_topk_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                            const WireHeader& header, Span<const std::uint8_t> body,
                            Span<float> out) {
  return qsparse_decompress(desc, ctx, header, body, out);
}

std::uint64_t qsgd_randk_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + qsparse_body_bytes(desc, sparsifier_k(desc, desc.n));
}
Status qsgd_randk_compress(const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const float> in, std::vector<std::uint8_t>& payload) {
  return qsparse_compress(desc, ctx, in, payload);
}
Status qsgd_randk_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                             const WireHeader& header, Span<const std::uint8_t> body,
                             Span<float> out) {
  return qsparse_decompress(desc, ctx, header, body, out);
}

}  // namespace gradcomp::ref::detail
