// Registers the streaming kernels of this folder with the Kokkos table.
#include "kk_streaming.hpp"

namespace gradcomp::kk {

void register_streaming(KkTable& table) {
  register_streaming_kernels(table);
  register_terngrad(table);
}

}  // namespace gradcomp::kk
