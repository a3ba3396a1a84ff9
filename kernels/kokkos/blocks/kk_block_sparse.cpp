// grbs and rbgs on Kokkos (docs/compressors/grbs.md, rbgs.md): the shared block draws are a few
// Philox calls per tensor on the host (kernels/common/host_plans.cpp, shared with CUDA); the
// selection is a short list of contiguous runs, so compress is a run gather and decode a run
// scatter (kk_runs.cpp). Same wire bytes and Status codes as reference/ref_grbs.cpp and
// ref_rbgs.cpp.
#include "common/host_plans.hpp"
#include "kk_blocks.hpp"

namespace gradcomp::kk::blocks {
namespace {

using namespace gradcomp::kk::sel;
namespace host = gradcomp::kernels::host;

std::uint64_t block_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + 4 * host::block_max_values(desc);
}

Status block_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                      std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  if (host::block_always_dense(desc)) return write_dense(desc, ctx, in, payload);
  std::uint64_t count = 0;
  const std::vector<Run> runs = host::block_runs(desc, ctx, count);
  return write_runs_payload(desc, ctx, in, runs, count, 0, payload);
}

template <bool kAccumulate>
Status block_decode(const CompressorDesc& desc, const CompressContext& ctx,
                    Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  const bool grbs = desc.kind == CompressorKind::kGrbs;
  const char* name = grbs ? "grbs" : "rbgs";
  auto fail = [&](const Status& st) { return make_status(st.code(), name, ": ", st.message()); };
  const bool dense = host::block_always_dense(desc);
  if (((h.flags & kFlagDense) != 0) != dense) {
    const char* flag = (h.flags & kFlagDense) ? "set" : "clear";
    if (grbs)
      return fail(make_status(StatusCode::kCorruptPayload, "dense flag is ", flag,
                              " but the descriptor ",
                              dense ? "always selects every tensor whole" : "selects blocks"));
    return fail(make_status(StatusCode::kCorruptPayload, "dense flag is ", flag,
                            " but density = ", desc.density,
                            dense ? " selects every segment whole" : " selects blocks"));
  }
  std::uint64_t count = 0;
  const std::vector<Run> runs = host::block_runs(desc, ctx, count);
  if (h.count != count)
    return fail(
        make_status(StatusCode::kCorruptPayload, "count ", h.count,
                    dense ? " but a dense payload has n = " : " but the shared stream selects ",
                    count, " values at step ", ctx.step));
  return read_runs_payload(name, desc, h, payload, runs, count, kAccumulate, alpha, out);
}

Status block_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                        Span<const std::uint8_t> payload, Span<float> out) {
  return block_decode<false>(desc, ctx, payload, 1.0f, out);
}

}  // namespace

std::vector<Run> block_runs(const CompressorDesc& desc, const CompressContext& ctx) {
  std::uint64_t count = 0;
  return host::block_runs(desc, ctx, count);
}

void register_block_sparsifiers(KkTable& table) {
  KkOps o;
  o.ops.payload_bytes = block_payload_bytes;
  o.ops.compress = block_compress;
  o.ops.decompress = block_decompress;
  o.ops.decompress_accumulate = block_decode<true>;
  table[CompressorKind::kGrbs] = o;
  table[CompressorKind::kRbgs] = o;
}

}  // namespace gradcomp::kk::blocks
