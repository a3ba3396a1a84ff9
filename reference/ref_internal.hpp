// Internals shared by the reference compressors (not installed, not for kernels).
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/compressor.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/rng.hpp"
#include "gradcomp/wire_format.hpp"

namespace gradcomp::ref::detail {

// Every compressor provides these three functions, named <name>_payload_bytes etc.
//  - payload_bytes: exact, or the maximum for variable-size compressors.
//  - compress: `in` has desc.n finite (or policy-allowed) values; write the whole payload.
//  - decompress: the header has been checked by the dispatcher (magic, version, kind, n, step,
//    tensor_id, body length); check every remaining field. `out` is zero-filled, desc.n long.
#define GRADCOMP_REF_DECLARE(c)                                                  \
  std::uint64_t c##_payload_bytes(const CompressorDesc& desc);                   \
  Status c##_compress(const CompressorDesc& desc, const CompressContext& ctx,    \
                      Span<const float> in, std::vector<std::uint8_t>& payload); \
  Status c##_decompress(const CompressorDesc& desc, const CompressContext& ctx,  \
                        const WireHeader& header, Span<const std::uint8_t> body, Span<float> out);

GRADCOMP_REF_DECLARE(identity)
GRADCOMP_REF_DECLARE(fp16)
GRADCOMP_REF_DECLARE(bf16)
GRADCOMP_REF_DECLARE(sign)
GRADCOMP_REF_DECLARE(blocksign)
GRADCOMP_REF_DECLARE(qsgd)
GRADCOMP_REF_DECLARE(terngrad)
GRADCOMP_REF_DECLARE(topk)
GRADCOMP_REF_DECLARE(dgc)
GRADCOMP_REF_DECLARE(randk)
GRADCOMP_REF_DECLARE(threshold)
GRADCOMP_REF_DECLARE(grbs)
GRADCOMP_REF_DECLARE(rbgs)
GRADCOMP_REF_DECLARE(qsgd_topk)
GRADCOMP_REF_DECLARE(qsgd_randk)
GRADCOMP_REF_DECLARE(signtopk)
GRADCOMP_REF_DECLARE(powersgd)
#undef GRADCOMP_REF_DECLARE

// A payload of kHeaderBytes + body_bytes bytes, zero-filled, with the header written.
// Fails if body_bytes does not fit the 32-bit header field.
Status new_payload(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t count,
                   std::uint8_t flags, std::uint64_t body_bytes,
                   std::vector<std::uint8_t>& payload);
inline std::uint8_t* body_of(std::vector<std::uint8_t>& payload) {
  return payload.data() + kHeaderBytes;
}

// ---- dense fallback (flag kFlagDense): body = n f32 values -----------------------------------
std::uint64_t dense_body_bytes(std::uint64_t n);
Status write_dense(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                   std::vector<std::uint8_t>& payload);
// Checks count == n and the body length, then copies the values.
Status read_dense(const WireHeader& header, Span<const std::uint8_t> body, Span<float> out);

// ---- sparse (index, value) lists --------------------------------------------------------------
// Body: count u32 indices (strictly increasing, < n), then count f32 values.
std::uint64_t sparse_body_bytes(std::uint64_t count);
// `indices` must be strictly increasing; values[i] belongs to indices[i].
Status write_sparse(const CompressorDesc& desc, const CompressContext& ctx,
                    const std::vector<std::uint32_t>& indices, const std::vector<float>& values,
                    std::vector<std::uint8_t>& payload);
// Validates the index list (length, order, range) and returns indices and values.
Status read_sparse_lists(const WireHeader& header, Span<const std::uint8_t> body,
                         std::uint32_t expected_count_max, std::vector<std::uint32_t>& indices,
                         std::vector<float>& values);
// read_sparse_lists, then scatter into out.
Status read_sparse(const WireHeader& header, Span<const std::uint8_t> body,
                   std::uint32_t expected_count_max, Span<float> out);
// Checks that `count` u32 indices at `p` are strictly increasing and below n.
Status check_indices(const std::uint8_t* p, std::uint64_t count, std::uint64_t n);

// ---- selection --------------------------------------------------------------------------------
// Exact top-k by |x| with the tie rule (larger |x| first, then lower index); returned sorted by
// index. Used by topk, dgc selection=exact, qsgd_topk and signtopk.
std::vector<std::uint32_t> topk_indices(Span<const float> v, std::uint64_t k);

// k distinct indices of [0, n) drawn uniformly (Floyd's algorithm with the counter RNG), sorted.
// Draw j (j = n - k .. n - 1) uses element j of `stream`.
std::vector<std::uint32_t> random_k_indices(const RngStream& stream, std::uint64_t n,
                                            std::uint64_t k);

}  // namespace gradcomp::ref::detail
