// Registers the streaming kernels that exist in this folder with the Kokkos table.
#include "../kk_ops.hpp"

namespace gradcomp::kk {

void register_streaming_kernels(KkTable& table);  // kk_streaming.cpp

void register_streaming(KkTable& table) { register_streaming_kernels(table); }

}  // namespace gradcomp::kk
