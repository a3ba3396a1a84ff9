// The streaming group: per-file registration functions (kk_register_streaming.cpp calls them).
#pragma once

#include "../kk_ops.hpp"

namespace gradcomp::kk {

void register_streaming_kernels(
    KkTable& table);                     // kk_streaming.cpp: identity fp16 bf16 sign blocksign
void register_terngrad(KkTable& table);  // kk_terngrad.cpp

}  // namespace gradcomp::kk
