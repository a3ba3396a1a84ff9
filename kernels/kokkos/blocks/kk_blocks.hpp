// The blocks group (randk grbs rbgs powersgd): per-compressor registration functions.
#pragma once

#include "../kk_ops.hpp"

namespace gradcomp::kk::blocks {

void register_randk(KkTable& table);  // kk_randk.cpp

}  // namespace gradcomp::kk::blocks
