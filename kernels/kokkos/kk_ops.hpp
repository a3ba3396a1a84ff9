// The Kokkos backend's table of compressors. Kernels live in streaming/, selection/ and
// blocks/; each group registers the compressors it implements (today: every compressor of the
// reference). A kind absent from the table makes the registry report "kk:<space> cannot
// run ...", never a silent fallback.
//
// The host entry points take host spans, wrap them in unmanaged Views and run the kernels on
// Kokkos' default execution space (Serial with Debian's Kokkos 3.4). They must give the same
// payload bytes and the same Status codes as the reference, including the NaN/Inf policy
// (fuse the finiteness check into the kernel's first pass instead of a separate sweep).
#pragma once

#include <map>

#include "gradcomp/kernels/registry.hpp"

namespace gradcomp::kk {

struct KkOps {
  // nullptr: every valid descriptor of the kind; otherwise the options this kernel supports.
  bool (*can_implement)(const CompressorDesc&) = nullptr;
  CompressorOps ops;
};
using KkTable = std::map<CompressorKind, KkOps>;

// Registration hooks, one per group (each in its own folder).
void register_streaming(KkTable& table);  // identity fp16 bf16 sign blocksign terngrad
void register_selection(KkTable& table);  // topk dgc threshold signtopk qsgd qsgd_topk qsgd_randk
void register_blocks(KkTable& table);     // randk grbs rbgs powersgd

const KkTable& table();

// True if kk has a kernel for this valid descriptor (its kind is registered and its
// can_implement, if any, accepts it).
bool can_implement(const CompressorDesc& desc);

// Initialises Kokkos on first use (and finalises it at exit) so that library users need no
// Kokkos code; a program that initialised Kokkos itself is left alone.
void ensure_initialized();

// "kk:serial", "kk:cuda", ...: from the default execution space.
std::string impl_name();

CompressorImpl registry_entry();

}  // namespace gradcomp::kk
