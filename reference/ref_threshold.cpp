// threshold: the GRACE threshold-v sparsifier (algorithms.md §4.8 (a);
// docs/compressors/threshold.md).
//
// S = {j : |v_j| > max(tau, 0)}, compared in double (tau is a double option). So tau <= 0 keeps
// every non-zero, kept values are never zero, and NaN never passes the comparison (it is
// dropped under nonfinite=propagate; rejected before this code under nonfinite=error).
//
// Body, sparse:  count u32 indices (strictly increasing) then count f32 values; count = |S|.
// Body, dense (flag kFlagDense) [P], when pairs would not be smaller than dense values, i.e.
// n > 0 and 8 |S| >= 4 n: the n values of C(v) (v_j on S, +0 elsewhere); count = n.
// payload_bytes() is therefore the maximum 32 + 4 n.
#include <algorithm>
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail {
namespace {

double effective_tau(const CompressorDesc& desc) { return std::max(desc.tau, 0.0); }

bool selected(float v, double thr) { return std::fabs(static_cast<double>(v)) > thr; }

// Dense is chosen when the (index, value) pairs would take at least as many bytes as n values.
bool prefer_dense(std::uint64_t count, std::uint64_t n) {
  return n > 0 && sparse_body_bytes(count) >= dense_body_bytes(n);
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

std::uint64_t threshold_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + dense_body_bytes(desc.n);  // the maximum (dense); sparse is smaller
}

Status threshold_compress(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<std::uint8_t>& payload) {
  const double thr = effective_tau(desc);
  std::vector<std::uint32_t> idx;
  std::vector<float> values;
  for (std::size_t j = 0; j < in.size(); ++j) {
    if (selected(in[j], thr)) {
      idx.push_back(static_cast<std::uint32_t>(j));
      values.push_back(in[j]);
    }
  }
  if (!prefer_dense(idx.size(), desc.n)) return write_sparse(desc, ctx, idx, values, payload);
  std::vector<float> dense(desc.n, 0.0f);  // C(v), not v: unselected entries are +0
  for (std::size_t i = 0; i < idx.size(); ++i) dense[idx[i]] = values[i];
  return write_dense(desc, ctx, Span<const float>(dense), payload);
}

Status threshold_decompress(const CompressorDesc& desc, const CompressContext&,
                            const WireHeader& header, Span<const std::uint8_t> body,
                            Span<float> out) {
  const double thr = effective_tau(desc);
  if (header.flags & kFlagDense) {
    GRADCOMP_CHECK_PAYLOAD(desc.n > 0, "dense flag set for n = 0");
    GRADCOMP_TRY(read_dense(header, body, out));  // count == n, body = 4n bytes
    // Every entry is either +0 (not selected) or passes the threshold, and enough entries pass
    // that the sender had to choose dense.
    std::uint64_t nnz = 0;
    for (std::size_t j = 0; j < out.size(); ++j) {
      if (float_bits(out[j]) == 0u) continue;
      GRADCOMP_CHECK_PAYLOAD(selected(out[j], thr), "dense value[", j, "] = ", out[j],
                             " is neither +0 nor above the threshold ", thr);
      ++nnz;
    }
    GRADCOMP_CHECK_PAYLOAD(prefer_dense(nnz, desc.n), "dense payload with only ", nnz,
                           " selected values of n = ", desc.n,
                           " (the sparse form is smaller and must be used)");
    return check_values_finite(desc, Span<const float>(out.data(), out.size()));
  }
  GRADCOMP_CHECK_PAYLOAD(!prefer_dense(header.count, desc.n), "sparse payload with count ",
                         header.count, " for n = ", desc.n,
                         " (not smaller than dense: the dense form must be used)");
  std::vector<std::uint32_t> indices;
  std::vector<float> values;
  // count < n/2 here, so the count bound is implied; the helper checks length and indices.
  GRADCOMP_TRY(read_sparse_lists(header, body, header.count, indices, values));
  for (std::size_t i = 0; i < values.size(); ++i) {
    GRADCOMP_CHECK_PAYLOAD(selected(values[i], thr), "value[", i, "] = ", values[i], " (index ",
                           indices[i], ") does not exceed the threshold ", thr);
  }
  GRADCOMP_TRY(check_values_finite(desc, Span<const float>(values)));
  for (std::size_t i = 0; i < indices.size(); ++i) out[indices[i]] = values[i];
  return Status::success();
}

}  // namespace gradcomp::ref::detail
