// randk: k uniformly random distinct indices (algorithms.md §4.7; docs/compressors/randk.md).
//
// Indices: random_k_indices (Floyd's algorithm) on RngStream(seed, kRandKIndices, step,
// tensor_id, indices=shared ? kSharedRank : rank). rescale=unbiased multiplies the kept values by
// n/k (in double, stored as f32), which makes E[C(v)] = v.
//
// Body, indices=shared:  k f32 values in increasing index order (the receiver regenerates the
//                        indices from the shared stream, so none are sent).
// Body, indices=private: k u32 indices (strictly increasing) then k f32 values.
// Header count = k. k = 0: empty body. k >= n: dense fallback (flag kFlagDense, n raw values).
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {
namespace {

bool dense_fallback(const CompressorDesc& desc, std::uint64_t k) {
  return desc.n > 0 && k >= desc.n;
}

RngStream index_stream(const CompressorDesc& desc, const CompressContext& ctx) {
  const std::uint32_t who = desc.indices == IndexMode::kShared ? kSharedRank : ctx.rank;
  return RngStream(desc.seed, RngPurpose::kRandKIndices, ctx.step, ctx.tensor_id, who);
}

// The factor applied to every kept value: n / k for rescale=unbiased, else 1.
double value_scale(const CompressorDesc& desc, std::uint64_t k) {
  if (desc.randk_scale != RandKScale::kUnbiased || k == 0) return 1.0;
  return static_cast<double>(desc.n) / static_cast<double>(k);
}

Status check_values_finite(const CompressorDesc& desc, Span<const float> values) {
  if (desc.nonfinite == NonfinitePolicy::kPropagate) return Status::success();
  for (std::size_t i = 0; i < values.size(); ++i) {
    GRADCOMP_CHECK_PAYLOAD(std::isfinite(values[i]), "value[", i, "] = ", values[i],
                           " is not finite (nonfinite=error)");
  }
  return Status::success();
}

}  // namespace

std::uint64_t randk_payload_bytes(const CompressorDesc& desc) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (dense_fallback(desc, k)) return kHeaderBytes + dense_body_bytes(desc.n);
  if (desc.indices == IndexMode::kShared) return kHeaderBytes + 4 * k;
  return kHeaderBytes + sparse_body_bytes(k);
}

Status randk_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                      std::vector<std::uint8_t>& payload) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (dense_fallback(desc, k)) return write_dense(desc, ctx, in, payload);  // n/k = 1: exact
  const std::vector<std::uint32_t> idx = random_k_indices(index_stream(desc, ctx), desc.n, k);
  const double scale = value_scale(desc, k);
  std::vector<float> values(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) {
    values[i] = static_cast<float>(static_cast<double>(in[idx[i]]) * scale);
    // x * n / k can overflow f32 for |x| near FLT_MAX: that is a non-finite message value.
    if (desc.nonfinite == NonfinitePolicy::kError && !std::isfinite(values[i])) {
      return make_status(StatusCode::kNonFinite, "randk: input[", idx[i], "] = ", in[idx[i]],
                         " times n/k = ", scale, " overflows f32 (nonfinite=error)");
    }
  }
  if (desc.indices == IndexMode::kPrivate) return write_sparse(desc, ctx, idx, values, payload);
  GRADCOMP_TRY(new_payload(desc, ctx, k, 0, 4 * k, payload));
  std::uint8_t* body = body_of(payload);
  for (std::size_t i = 0; i < values.size(); ++i) store_f32(body + 4 * i, values[i]);
  return Status::success();
}

Status randk_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                        const WireHeader& header, Span<const std::uint8_t> body, Span<float> out) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = dense_fallback(desc, k);
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear", " but k = ", k,
                         " and n = ", desc.n, dense ? " require it" : " forbid it");
  if (dense) {
    GRADCOMP_TRY(read_dense(header, body, out));
    return check_values_finite(desc, Span<const float>(out.data(), out.size()));
  }
  GRADCOMP_CHECK_PAYLOAD(header.count == k, "count ", header.count, " != k ", k);
  std::vector<std::uint32_t> indices;
  std::vector<float> values;
  if (desc.indices == IndexMode::kPrivate) {
    GRADCOMP_TRY(read_sparse_lists(header, body, static_cast<std::uint32_t>(k), indices, values));
  } else {
    GRADCOMP_CHECK_PAYLOAD(body.size() == 4 * k, "body is ", body.size(), " bytes, expected ",
                           4 * k, " for ", k, " shared-index values");
    // The same shared stream as the sender: every rank regenerates the same index set.
    indices = random_k_indices(index_stream(desc, ctx), desc.n, k);
    values.resize(k);
    for (std::uint64_t i = 0; i < k; ++i) values[i] = load_f32(body.data() + 4 * i);
  }
  GRADCOMP_TRY(check_values_finite(desc, Span<const float>(values)));
  for (std::size_t i = 0; i < indices.size(); ++i) out[indices[i]] = values[i];
  return Status::success();
}

}  // namespace gradcomp::ref::detail
