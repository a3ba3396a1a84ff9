// TEMPORARY (see ref_pending.cpp).
#include "ref_internal.hpp"
namespace gradcomp::ref {
__attribute__((weak)) Status terngrad_local_scalers(const CompressorDesc&, Span<const float>,
                                                    std::vector<float>&) {
  return Status(StatusCode::kUnimplemented, "terngrad pending");
}
}  // namespace gradcomp::ref
