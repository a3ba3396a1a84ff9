// Registers the selection kernels that exist in this folder with the Kokkos table.
#include "../kk_ops.hpp"

namespace gradcomp::kk {

void register_selection(KkTable& /*table*/) {}

}  // namespace gradcomp::kk
