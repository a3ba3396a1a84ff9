// Registers the blocks kernels that exist in this folder with the Kokkos table.
#include "../kk_ops.hpp"

namespace gradcomp::kk {

void register_blocks(KkTable& /*table*/) {}

}  // namespace gradcomp::kk
