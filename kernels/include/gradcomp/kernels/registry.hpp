// The implementation registry: every backend that can run a compressor, in order of preference,
// the reference last (style.md B2.5). Drivers (gradcomp-validate, gradcomp-bench) and users pick
// an implementation by name: "ref:any", "kk:serial" (Kokkos on its default execution space),
// later "kk:cuda", "cuda:...". Asking for an optimized implementation that cannot run a
// descriptor is an error, never a silent fallback to the reference.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp {

// The operations every implementation provides, with the reference's semantics and Status
// codes (reference/include/gradcomp/ref/compress.hpp).
struct CompressorOps {
  std::uint64_t (*payload_bytes)(const CompressorDesc&) = nullptr;
  Status (*compress)(const CompressorDesc&, const CompressContext&, Span<const float> in,
                     std::vector<std::uint8_t>& payload) = nullptr;
  Status (*decompress)(const CompressorDesc&, const CompressContext&,
                       Span<const std::uint8_t> payload, Span<float> out) = nullptr;
  // out += alpha * D(payload): the receive side of allgather-style aggregation.
  Status (*decompress_accumulate)(const CompressorDesc&, const CompressContext&,
                                  Span<const std::uint8_t> payload, float alpha,
                                  Span<float> out) = nullptr;
};

struct CompressorImpl {
  std::string name;  // "<backend>:<variant>"
  bool is_reference = false;
  // Same inputs and RNG keys give the same bytes on every run.
  bool deterministic = true;
  // Which descriptors this implementation runs (false: the caller must not use it for them).
  bool (*can_implement)(const CompressorDesc&) = nullptr;
  // The operations for one compressor kind (valid when can_implement is true).
  CompressorOps (*ops)(CompressorKind) = nullptr;
};

// Every implementation compiled into this build, most preferred first, "ref:any" last.
const std::vector<CompressorImpl>& compressor_impls();

// Picks the implementation for `desc`:
//   requested ""/"any": the first implementation that can run desc (possibly the reference);
//   "ref"/"ref:any": the reference;
//   "kk", "kk:serial", ...: that implementation (a backend prefix matches its first impl).
// An optimized implementation that is not built, or cannot run desc, is kUnimplemented with a
// message saying why: never a silent fallback to the reference.
Result<const CompressorImpl*> select_impl(const CompressorDesc& desc, std::string_view requested);

}  // namespace gradcomp
