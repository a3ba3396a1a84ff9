// The blocks group (randk grbs rbgs powersgd): per-compressor registration functions and the
// contiguous-run gather/scatter shared by grbs and rbgs.
#pragma once

#include <cstdint>
#include <vector>

#include "../selection/kk_sel_common.hpp"
#include "common/host_plans.hpp"

namespace gradcomp::kk::blocks {

void register_randk(KkTable& table);              // kk_randk.cpp
void register_block_sparsifiers(KkTable& table);  // grbs and rbgs: kk_block_sparse.cpp
void register_powersgd(KkTable& table);           // kk_powersgd.cpp

// A contiguous run of selected values (kernels/common/host_plans.hpp).
using Run = kernels::host::Run;

// body[r.pos + i] = in[r.at + i] for every run (runs in body order). Returns the number of
// values written (the sum of the lengths).
void gather_runs(const std::vector<Run>& runs, sel::UView<const float> in, float* body);

// Decode side, after validation: out = D (decompress) or out = f32(f64(out) + f64(alpha) D)
// (accumulate) for every element, D = the run's body value inside a run and +0 elsewhere (the
// registry's reference accumulate). Runs must be disjoint; their order does not matter.
void apply_runs(std::vector<Run> runs, const float* body, bool accumulate, float alpha,
                sel::UView<float> out);

// The grbs or rbgs (by desc.kind) selection of this (desc, ctx) as runs in body order, exactly
// what compress gathers (the fused EF step uses it to form e' = p - D(C(p)) without a dense
// decode).
std::vector<Run> block_runs(const CompressorDesc& desc, const CompressContext& ctx);

// First body value that is NaN/Inf (nonfinite=error check of a payload), or kNone.
std::uint64_t first_nonfinite_value(const float* body, std::uint64_t count);

// Compress tail of grbs/rbgs after the argument check: nonfinite=error covers the whole input
// (as the reference), though the gather reads only the runs; then the header (count, flags) and
// the gathered values. `payload` is replaced only on success.
Status write_runs_payload(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, const std::vector<Run>& runs, std::uint64_t count,
                          std::uint8_t flags, std::vector<std::uint8_t>& payload);

// Decode tail of grbs/rbgs after the header's count check: body size, nonfinite=error body
// values, then apply_runs. Errors are prefixed "<name>: " like the kernel's other messages.
Status read_runs_payload(const char* name, const CompressorDesc& desc, const WireHeader& h,
                         Span<const std::uint8_t> payload, const std::vector<Run>& runs,
                         std::uint64_t count, bool accumulate, float alpha, Span<float> out);

}  // namespace gradcomp::kk::blocks
