// Dispatch of the reference compressors: common argument checks, the NaN/Inf policy and the
// "no state lost on error" guarantee live here, once.
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref {
namespace {

struct Entry {
  std::uint64_t (*payload_bytes)(const CompressorDesc&);
  Status (*compress)(const CompressorDesc&, const CompressContext&, Span<const float>,
                     std::vector<std::uint8_t>&);
  Status (*decompress)(const CompressorDesc&, const CompressContext&, const WireHeader&,
                       Span<const std::uint8_t>, Span<float>);
};

#define GRADCOMP_REF_ENTRY(c) \
  Entry { detail::c##_payload_bytes, detail::c##_compress, detail::c##_decompress }

Entry entry_for(CompressorKind kind) {
  switch (kind) {
    case CompressorKind::kIdentity: return GRADCOMP_REF_ENTRY(identity);
    case CompressorKind::kFp16: return GRADCOMP_REF_ENTRY(fp16);
    case CompressorKind::kBf16: return GRADCOMP_REF_ENTRY(bf16);
    case CompressorKind::kSign: return GRADCOMP_REF_ENTRY(sign);
    case CompressorKind::kBlockSign: return GRADCOMP_REF_ENTRY(blocksign);
    case CompressorKind::kQsgd: return GRADCOMP_REF_ENTRY(qsgd);
    case CompressorKind::kTernGrad: return GRADCOMP_REF_ENTRY(terngrad);
    case CompressorKind::kTopK: return GRADCOMP_REF_ENTRY(topk);
    case CompressorKind::kDgc: return GRADCOMP_REF_ENTRY(dgc);
    case CompressorKind::kRandK: return GRADCOMP_REF_ENTRY(randk);
    case CompressorKind::kThreshold: return GRADCOMP_REF_ENTRY(threshold);
    case CompressorKind::kGrbs: return GRADCOMP_REF_ENTRY(grbs);
    case CompressorKind::kRbgs: return GRADCOMP_REF_ENTRY(rbgs);
    case CompressorKind::kQsgdTopK: return GRADCOMP_REF_ENTRY(qsgd_topk);
    case CompressorKind::kQsgdRandK: return GRADCOMP_REF_ENTRY(qsgd_randk);
    case CompressorKind::kSignTopK: return GRADCOMP_REF_ENTRY(signtopk);
    case CompressorKind::kPowerSgd: return GRADCOMP_REF_ENTRY(powersgd);
  }
  return Entry{nullptr, nullptr, nullptr};
}
#undef GRADCOMP_REF_ENTRY

}  // namespace

std::uint64_t payload_bytes(const CompressorDesc& desc) {
  const Entry e = entry_for(desc.kind);
  return e.payload_bytes ? e.payload_bytes(desc) : 0;
}

Status compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                std::vector<std::uint8_t>& payload) {
  GRADCOMP_TRY(validate(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(in.size() == desc.n, name, ": input has ", in.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(in.size() == 0 || in.data() != nullptr, name, ": null input pointer");
  if (desc.nonfinite == NonfinitePolicy::kError) {
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (!std::isfinite(in[i])) {
        return make_status(StatusCode::kNonFinite, name, ": input[", i, "] = ", in[i],
                           " is not finite (nonfinite=error; use nonfinite=propagate to allow)");
      }
    }
  }
  const Entry e = entry_for(desc.kind);
  std::vector<std::uint8_t> out;
  GRADCOMP_TRY(e.compress(desc, ctx, in, out));
  // The size contract: exact for fixed-size compressors, an upper bound otherwise.
  const std::uint64_t promised = e.payload_bytes(desc);
  const bool size_ok =
      compressor_is_variable_size(desc.kind) ? out.size() <= promised : out.size() == promised;
  if (!size_ok) {
    return make_status(StatusCode::kInternal, name, ": produced ", out.size(),
                       " payload bytes but payload_bytes() = ", promised);
  }
  payload.swap(out);
  return Status::success();
}

Status decompress(const CompressorDesc& desc, const CompressContext& ctx,
                  Span<const std::uint8_t> payload, Span<float> out) {
  GRADCOMP_TRY(validate(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(out.size() == desc.n, name, ": output has ", out.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(payload.size() == 0 || payload.data() != nullptr, name,
                     ": null payload pointer");
  WireHeader header;
  Status s = read_header(payload, desc.kind, desc.n, ctx.step, ctx.tensor_id, &header);
  if (!s.ok()) return make_status(s.code(), name, ": ", s.message());
  std::vector<float> dense(desc.n, 0.0f);
  const Entry e = entry_for(desc.kind);
  s = e.decompress(desc, ctx, header,
                   Span<const std::uint8_t>(payload.data() + kHeaderBytes, header.body_bytes),
                   Span<float>(dense));
  if (!s.ok()) return make_status(s.code(), name, ": ", s.message());
  // The NaN/Inf policy holds on the receiving side too: under nonfinite=error a payload that
  // decodes to a non-finite value is corrupt (no honest sender under that policy produces one).
  if (desc.nonfinite == NonfinitePolicy::kError) {
    for (std::size_t i = 0; i < dense.size(); ++i) {
      if (!std::isfinite(dense[i])) {
        return make_status(StatusCode::kCorruptPayload, name, ": decoded element [", i,
                           "] = ", dense[i], " is not finite (nonfinite=error)");
      }
    }
  }
  for (std::size_t i = 0; i < dense.size(); ++i) out[i] = dense[i];
  return Status::success();
}

}  // namespace gradcomp::ref
