// Payload framing, dense fallback, sparse lists and index selection shared by the oracles.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {

Status new_payload(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t count,
                   std::uint8_t flags, std::uint64_t body_bytes,
                   std::vector<std::uint8_t>& payload) {
  GRADCOMP_CHECK_ARG(body_bytes <= 0xFFFFFFFFull, compressor_name(desc.kind), ": body of ",
                     body_bytes, " bytes exceeds the 32-bit body_bytes header field");
  GRADCOMP_CHECK_ARG(count <= 0xFFFFFFFFull, compressor_name(desc.kind), ": count ", count,
                     " exceeds the 32-bit header field");
  payload.assign(kHeaderBytes + body_bytes, 0);
  WireHeader h;
  h.compressor = static_cast<std::uint8_t>(desc.kind);
  h.flags = flags;
  h.n = desc.n;
  h.step = ctx.step;
  h.tensor_id = ctx.tensor_id;
  h.count = static_cast<std::uint32_t>(count);
  h.body_bytes = static_cast<std::uint32_t>(body_bytes);
  write_header(h, payload.data());
  return Status::success();
}

std::uint64_t dense_body_bytes(std::uint64_t n) { return 4 * n; }

Status write_dense(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                   std::vector<std::uint8_t>& payload) {
  GRADCOMP_TRY(new_payload(desc, ctx, desc.n, kFlagDense, dense_body_bytes(desc.n), payload));
  std::uint8_t* body = body_of(payload);
  for (std::size_t i = 0; i < in.size(); ++i) store_f32(body + 4 * i, in[i]);
  return Status::success();
}

Status read_dense(const WireHeader& header, Span<const std::uint8_t> body, Span<float> out) {
  GRADCOMP_CHECK_PAYLOAD(header.count == header.n, "dense payload count ", header.count, " != n ",
                         header.n);
  GRADCOMP_CHECK_PAYLOAD(body.size() == dense_body_bytes(header.n), "dense body is ", body.size(),
                         " bytes, expected ", dense_body_bytes(header.n));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_f32(body.data() + 4 * i);
  return Status::success();
}

std::uint64_t sparse_body_bytes(std::uint64_t count) { return 8 * count; }

Status write_sparse(const CompressorDesc& desc, const CompressContext& ctx,
                    const std::vector<std::uint32_t>& indices, const std::vector<float>& values,
                    std::vector<std::uint8_t>& payload) {
  const std::uint64_t count = indices.size();
  GRADCOMP_TRY(new_payload(desc, ctx, count, 0, sparse_body_bytes(count), payload));
  std::uint8_t* body = body_of(payload);
  for (std::uint64_t i = 0; i < count; ++i) {
    store_u32(body + 4 * i, indices[i]);
    store_f32(body + 4 * count + 4 * i, values[i]);
  }
  return Status::success();
}

Status check_indices(const std::uint8_t* p, std::uint64_t count, std::uint64_t n) {
  std::uint64_t prev = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint32_t idx = load_u32(p + 4 * i);
    GRADCOMP_CHECK_PAYLOAD(idx < n, "index[", i, "] = ", idx, " is out of range (n = ", n, ")");
    GRADCOMP_CHECK_PAYLOAD(i == 0 || idx > prev, "indices are not strictly increasing at [", i,
                           "]: ", prev, " then ", idx);
    prev = idx;
  }
  return Status::success();
}

Status read_sparse_lists(const WireHeader& header, Span<const std::uint8_t> body,
                         std::uint32_t expected_count_max, std::vector<std::uint32_t>& indices,
                         std::vector<float>& values) {
  GRADCOMP_CHECK_PAYLOAD(header.count <= expected_count_max, "header count ", header.count,
                         " exceeds the maximum ", expected_count_max, " for this descriptor");
  GRADCOMP_CHECK_PAYLOAD(body.size() == sparse_body_bytes(header.count), "sparse body is ",
                         body.size(), " bytes, expected ", sparse_body_bytes(header.count), " for ",
                         header.count, " (index, value) pairs");
  GRADCOMP_TRY(check_indices(body.data(), header.count, header.n));
  indices.resize(header.count);
  values.resize(header.count);
  for (std::uint64_t i = 0; i < header.count; ++i) {
    indices[i] = load_u32(body.data() + 4 * i);
    values[i] = load_f32(body.data() + 4 * header.count + 4 * i);
  }
  return Status::success();
}

Status read_sparse(const WireHeader& header, Span<const std::uint8_t> body,
                   std::uint32_t expected_count_max, Span<float> out) {
  std::vector<std::uint32_t> indices;
  std::vector<float> values;
  GRADCOMP_TRY(read_sparse_lists(header, body, expected_count_max, indices, values));
  for (std::size_t i = 0; i < indices.size(); ++i) out[indices[i]] = values[i];
  return Status::success();
}

std::vector<std::uint32_t> topk_indices(Span<const float> v, std::uint64_t k) {
  std::vector<std::uint32_t> order(v.size());
  std::iota(order.begin(), order.end(), 0u);
  k = std::min<std::uint64_t>(k, v.size());
  // Total order: larger |x| first, then lower index. NaN (only under nonfinite=propagate) sorts
  // as larger than every number so that it is always sent and never silently dropped.
  auto before = [&](std::uint32_t a, std::uint32_t b) {
    const float fa = std::fabs(v[a]), fb = std::fabs(v[b]);
    const bool na = std::isnan(fa), nb = std::isnan(fb);
    if (na != nb) return na;
    if (!na && fa != fb) return fa > fb;
    return a < b;
  };
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    before);
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<std::uint32_t> random_k_indices(const RngStream& stream, std::uint64_t n,
                                            std::uint64_t k) {
  // Floyd's algorithm: for j = n-k .. n-1 draw t uniform in [0, j]; take t unless already
  // taken, else take j. Every k-subset is equally likely.
  std::set<std::uint64_t> chosen;
  for (std::uint64_t j = n - k; j < n; ++j) {
    const std::uint64_t t = stream.uniform_below(j + 1, j);
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  return std::vector<std::uint32_t>(chosen.begin(), chosen.end());
}

}  // namespace gradcomp::ref::detail
