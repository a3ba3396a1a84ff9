// topk: exact top-k by |x|, ties to the lower index; k = 0 sends nothing; k >= n sends dense.
// Body: k u32 indices (increasing) then k f32 values; dense fallback: n f32 (flag dense).
#include "ref_internal.hpp"

namespace gradcomp::ref::detail {

std::uint64_t topk_payload_bytes(const CompressorDesc& desc) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (desc.n > 0 && k >= desc.n) return kHeaderBytes + dense_body_bytes(desc.n);
  return kHeaderBytes + sparse_body_bytes(k);
}

Status topk_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (desc.n > 0 && k >= desc.n) return write_dense(desc, ctx, in, payload);
  const std::vector<std::uint32_t> idx = topk_indices(in, k);
  std::vector<float> values(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) values[i] = in[idx[i]];
  return write_sparse(desc, ctx, idx, values, payload);
}

Status topk_decompress(const CompressorDesc& desc, const CompressContext&, const WireHeader& header,
                       Span<const std::uint8_t> body, Span<float> out) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = desc.n > 0 && k >= desc.n;
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear", " but k = ", k,
                         " and n = ", desc.n, dense ? " require it" : " forbid it");
  if (dense) return read_dense(header, body, out);
  GRADCOMP_CHECK_PAYLOAD(header.count == k, "count ", header.count, " != k ", k);
  return read_sparse(header, body, static_cast<std::uint32_t>(k), out);
}

}  // namespace gradcomp::ref::detail
