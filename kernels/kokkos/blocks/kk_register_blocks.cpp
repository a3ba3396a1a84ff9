// Registers the blocks kernels (randk grbs rbgs powersgd) with the Kokkos table.
#include "../kk_ops.hpp"
#include "kk_blocks.hpp"

namespace gradcomp::kk {

void register_blocks(KkTable& table) {
  blocks::register_randk(table);
  blocks::register_block_sparsifiers(table);
  blocks::register_powersgd(table);
}

}  // namespace gradcomp::kk
