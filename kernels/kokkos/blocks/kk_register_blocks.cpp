// Registers the blocks kernels that exist in this folder with the Kokkos table.
// Implemented: randk. Not yet: grbs, rbgs, powersgd (they run on the reference only).
#include "../kk_ops.hpp"
#include "kk_blocks.hpp"

namespace gradcomp::kk {

void register_blocks(KkTable& table) { blocks::register_randk(table); }

}  // namespace gradcomp::kk
