// randk on Kokkos: the reference's Floyd index draw (docs/compressors/randk.md), then a parallel
// gather (compress) or the shared validate-then-apply scatter (decode). Reuses the selection
// group's framing helpers (kk_sel_common.hpp) so the wire bytes and Status texts match.
#include <cmath>

#include "../selection/kk_sel_common.hpp"
#include "kk_blocks.hpp"

namespace gradcomp::kk::blocks {
namespace {

using namespace gradcomp::kk::sel;

bool is_dense(const CompressorDesc& desc, std::uint64_t k) { return desc.n > 0 && k >= desc.n; }

std::uint64_t body_bytes(const CompressorDesc& desc, std::uint64_t k) {
  if (is_dense(desc, k)) return 4 * desc.n;
  return desc.indices == IndexMode::kShared ? 4 * k : 8 * k;
}

std::uint64_t randk_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + body_bytes(desc, sparsifier_k(desc, desc.n));
}

// random_k_indices of the reference (Floyd with the counter RNG): the draws are independent
// Philox calls and run in a kernel; collision resolution is sequential (host, bitmap, O(k)).
void support_of(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t k,
                std::vector<std::uint32_t>& support) {
  const std::uint32_t who = desc.indices == IndexMode::kShared ? kSharedRank : ctx.rank;
  const RngStream stream(desc.seed, RngPurpose::kRandKIndices, ctx.step, ctx.tensor_id, who);
  const std::uint64_t n = desc.n, j0 = n - k;
  std::vector<std::uint64_t> draws(k);
  const UView<std::uint64_t> dv(draws.data(), k);
  Kokkos::parallel_for(
      "gradcomp::kk::randk_draws", Range<>(0, k),
      KOKKOS_LAMBDA(const std::uint64_t i) { dv(i) = stream.uniform_below(j0 + i + 1, j0 + i); });
  std::vector<std::uint64_t> taken((n + 63) / 64, 0);
  for (std::uint64_t i = 0; i < k; ++i) {
    std::uint64_t t = draws[i];
    if ((taken[t / 64] >> (t % 64)) & 1u) t = j0 + i;
    taken[t / 64] |= std::uint64_t{1} << (t % 64);
  }
  // The bitmap holds exactly the chosen set: scanning it yields the indices in increasing order
  // (cheaper than sorting k random indices, which cost ~8 ms at k = 2^24 / 100).
  support.resize(k);
  std::uint64_t m = 0;
  for (std::uint64_t w = 0; w < taken.size(); ++w) {
    for (std::uint64_t bits = taken[w]; bits != 0; bits &= bits - 1)
      support[m++] =
          static_cast<std::uint32_t>(64 * w + static_cast<std::uint64_t>(__builtin_ctzll(bits)));
  }
}

// First NaN/Inf index or kNone. The exponent-mask test has no branch per element, so the chunk
// loop vectorises (~15 GB/s here vs ~8 GB/s for a per-element key compare).
std::uint64_t first_bad(UView<const float> in) {
  std::uint64_t bad = kNone;
  const std::uint64_t n = in.extent(0);
  Kokkos::parallel_reduce(
      "gradcomp::kk::randk_finite", Range<>(0, chunks(n)),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& m) {
        const std::uint64_t e = chunk_end(c, n);
        std::uint32_t any = 0;
        for (std::uint64_t i = c * kChunk; i < e; ++i)
          any |= static_cast<std::uint32_t>((float_bits(in(i)) & 0x7F800000u) == 0x7F800000u);
        if (any == 0) return;
        for (std::uint64_t i = c * kChunk; i < e; ++i) {
          if ((float_bits(in(i)) & 0x7F800000u) == 0x7F800000u) {
            if (i < m) m = i;
            return;
          }
        }
      },
      Kokkos::Min<std::uint64_t>(bad));
  return bad;
}

double value_scale(const CompressorDesc& desc, std::uint64_t k) {
  if (desc.randk_scale != RandKScale::kUnbiased || k == 0) return 1.0;
  return static_cast<double>(desc.n) / static_cast<double>(k);
}

Status randk_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                      std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (is_dense(desc, k)) return write_dense(desc, ctx, in, payload);
  const UView<const float> x = view_of(in);
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  // The gather reads only k elements, so the whole-input finiteness check is its own pass.
  const std::uint64_t bad = check ? first_bad(x) : kNone;
  if (bad != kNone) return nonfinite_status(desc, in, bad);
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, k, 0, body_bytes(desc, k), p));
  if (k == 0) {
    payload.swap(p);
    return Status::success();
  }
  std::vector<std::uint32_t> support;
  support_of(desc, ctx, k, support);
  const UView<const std::uint32_t> sv(support.data(), k);
  std::uint8_t* q = p.data() + kHeaderBytes;
  if (desc.indices == IndexMode::kPrivate) {
    std::memcpy(q, support.data(), 4 * k);
    q += 4 * k;
  }
  const UView<float> vv(reinterpret_cast<float*>(q), k);
  const double scale = value_scale(desc, k);
  // x * n/k can overflow f32: the first such index is reported, as by the reference.
  std::uint64_t over = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::randk_gather", Range<>(0, k),
      KOKKOS_LAMBDA(const std::uint64_t i, std::uint64_t& m) {
        const float v = static_cast<float>(static_cast<double>(x(sv(i))) * scale);
        vv(i) = v;
        if (check && (float_bits(v) & 0x7F800000u) == 0x7F800000u && i < m) m = i;
      },
      Kokkos::Min<std::uint64_t>(over));
  if (over != kNone) {
    const std::uint32_t j = support[over];
    return make_status(StatusCode::kNonFinite, "randk: input[", j, "] = ", in[j],
                       " times n/k = ", scale, " overflows f32 (nonfinite=error)");
  }
  payload.swap(p);
  return Status::success();
}

template <bool kAccumulate>
Status randk_decode(const CompressorDesc& desc, const CompressContext& ctx,
                    Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  auto fail = [&](const Status& st) { return make_status(st.code(), "randk: ", st.message()); };
  const Span<const std::uint8_t> body(payload.data() + kHeaderBytes, h.body_bytes);
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = is_dense(desc, k);
  bool done = false;
  const Status s = decode_if_dense(desc, h, body, k, dense, kAccumulate, alpha, out, done);
  if (!s.ok()) return fail(s);
  if (done) return Status::success();
  if (h.count != k)
    return fail(make_status(StatusCode::kCorruptPayload, "count ", h.count, " != k ", k));
  if (body.size() != body_bytes(desc, k))
    return fail(make_status(StatusCode::kCorruptPayload, "body is ", body.size(),
                            " bytes, expected ", body_bytes(desc, k), " for k = ", k));
  std::vector<std::uint32_t> regenerated;
  const std::uint8_t* q = body.data();
  UView<const std::uint32_t> support;
  if (desc.indices == IndexMode::kPrivate) {
    support = u32_view(q, k);
    const std::uint64_t bad = first_bad_index(support, desc.n);
    if (bad != kNone)
      return fail(describe_bad_index(reinterpret_cast<const std::uint32_t*>(q), bad, desc.n));
    q += 4 * k;
  } else if (k > 0) {
    support_of(desc, ctx, k, regenerated);
    support = UView<const std::uint32_t>(regenerated.data(), k);
  }
  const UView<const float> vals = f32_view(q, k);
  if (desc.nonfinite == NonfinitePolicy::kError) {
    const std::uint64_t bad = first_bad(vals);
    if (bad != kNone)
      return fail(make_status(StatusCode::kCorruptPayload, "value[", bad,
                              "] = ", load_f32(q + 4 * bad), " is not finite (nonfinite=error)"));
  }
  apply_sparse(support, vals, kAccumulate, alpha, view_of(out));
  return Status::success();
}

}  // namespace

void register_randk(KkTable& table) {
  table[CompressorKind::kRandK] =
      small_ops<randk_decode<false>, randk_decode<true>>(randk_payload_bytes, randk_compress);
}

}  // namespace gradcomp::kk::blocks
