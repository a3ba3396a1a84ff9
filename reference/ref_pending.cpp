// TEMPORARY during parallel development: weak placeholders so the library links while the
// remaining oracles are being written. Deleted before the issue is closed.
#include "ref_internal.hpp"

namespace gradcomp::ref::detail {
#define GRADCOMP_PENDING(c)                                                                   \
  __attribute__((weak)) std::uint64_t c##_payload_bytes(const CompressorDesc&) { return 0; } \
  __attribute__((weak)) Status c##_compress(const CompressorDesc&, const CompressContext&,   \
                                            Span<const float>, std::vector<std::uint8_t>&) { \
    return Status(StatusCode::kUnimplemented, #c " pending");                                \
  }                                                                                          \
  __attribute__((weak)) Status c##_decompress(const CompressorDesc&, const CompressContext&, \
                                              const WireHeader&, Span<const std::uint8_t>,   \
                                              Span<float>) {                                 \
    return Status(StatusCode::kUnimplemented, #c " pending");                                \
  }
GRADCOMP_PENDING(blocksign)
GRADCOMP_PENDING(qsgd)
GRADCOMP_PENDING(terngrad)
GRADCOMP_PENDING(dgc)
GRADCOMP_PENDING(randk)
GRADCOMP_PENDING(threshold)
GRADCOMP_PENDING(grbs)
GRADCOMP_PENDING(rbgs)
GRADCOMP_PENDING(qsgd_topk)
GRADCOMP_PENDING(qsgd_randk)
GRADCOMP_PENDING(signtopk)
GRADCOMP_PENDING(powersgd)
}  // namespace gradcomp::ref::detail
