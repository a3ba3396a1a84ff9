// Contiguous-run gather/scatter shared by the grbs and rbgs kernels (kk_blocks.hpp).
#include <algorithm>

#include "kk_blocks.hpp"

namespace gradcomp::kk::blocks {

using namespace gradcomp::kk::sel;

namespace {
// Runs longer than this are split into pieces so that a parallel backend gets work items of
// bounded size (one tensor of grbs can be one long run).
constexpr std::uint64_t kPiece = 65536;

std::vector<Run> split(const std::vector<Run>& runs) {
  std::vector<Run> out;
  for (const Run& r : runs)
    for (std::uint64_t o = 0; o < r.len; o += kPiece)
      out.push_back(Run{r.at + o, r.pos + o, std::min(kPiece, r.len - o)});
  return out;
}
}  // namespace

void gather_runs(const std::vector<Run>& runs, UView<const float> in, float* body) {
  std::vector<Run> pieces = split(runs);
  const Run* pc = pieces.data();
  Kokkos::parallel_for(
      "gradcomp::kk::gather_runs", Range<>(0, pieces.size()), KOKKOS_LAMBDA(const std::uint64_t p) {
        const Run r = pc[p];
        for (std::uint64_t i = 0; i < r.len; ++i) body[r.pos + i] = in(r.at + i);
      });
}

void apply_runs(std::vector<Run> runs, const float* body, bool accumulate, float alpha,
                UView<float> out) {
  const std::uint64_t n = out.extent(0);
  // Sorted by destination, the gaps between runs are the unselected elements; pieces with
  // pos == kNone are gaps (D = +0).
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.at < b.at; });
  std::vector<Run> all;
  std::uint64_t next = 0;
  for (const Run& r : runs) {
    if (r.len == 0) continue;
    if (r.at > next) all.push_back(Run{next, kNone, r.at - next});
    all.push_back(r);
    next = r.at + r.len;
  }
  if (next < n) all.push_back(Run{next, kNone, n - next});
  std::vector<Run> pieces;
  for (const Run& r : all)
    for (std::uint64_t o = 0; o < r.len; o += kPiece)
      pieces.push_back(
          Run{r.at + o, r.pos == kNone ? kNone : r.pos + o, std::min(kPiece, r.len - o)});
  const Run* pc = pieces.data();
  const double a = static_cast<double>(alpha);
  if (!accumulate) {
    Kokkos::parallel_for(
        "gradcomp::kk::runs_decode", Range<>(0, pieces.size()),
        KOKKOS_LAMBDA(const std::uint64_t p) {
          const Run r = pc[p];
          if (r.pos == kNone) {
            for (std::uint64_t i = 0; i < r.len; ++i) out(r.at + i) = 0.0f;
          } else {
            for (std::uint64_t i = 0; i < r.len; ++i) out(r.at + i) = body[r.pos + i];
          }
        });
    return;
  }
  Kokkos::parallel_for(
      "gradcomp::kk::runs_accumulate", Range<>(0, pieces.size()),
      KOKKOS_LAMBDA(const std::uint64_t p) {
        const Run r = pc[p];
        if (r.pos == kNone) {
          const double zero = a * 0.0;  // keeps -0 -> +0 and NaN alpha exactly as the reference
          for (std::uint64_t i = 0; i < r.len; ++i)
            out(r.at + i) = static_cast<float>(static_cast<double>(out(r.at + i)) + zero);
        } else {
          for (std::uint64_t i = 0; i < r.len; ++i)
            out(r.at + i) = static_cast<float>(static_cast<double>(out(r.at + i)) +
                                               a * static_cast<double>(body[r.pos + i]));
        }
      });
}

std::uint64_t first_nonfinite_value(const float* body, std::uint64_t count) {
  return count == 0 ? kNone : first_nonfinite(UView<const float>(body, count));
}

Status write_runs_payload(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, const std::vector<Run>& runs, std::uint64_t count,
                          std::uint8_t flags, std::vector<std::uint8_t>& payload) {
  const UView<const float> x = view_of(in);
  if (desc.nonfinite == NonfinitePolicy::kError) {
    const std::uint64_t bad = first_nonfinite(x);
    if (bad != kNone) return nonfinite_status(desc, in, bad);
  }
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, count, flags, 4 * count, p));
  gather_runs(runs, x, reinterpret_cast<float*>(p.data() + kHeaderBytes));
  payload.swap(p);
  return Status::success();
}

Status read_runs_payload(const char* name, const CompressorDesc& desc, const WireHeader& h,
                         Span<const std::uint8_t> payload, const std::vector<Run>& runs,
                         std::uint64_t count, bool accumulate, float alpha, Span<float> out) {
  if (h.body_bytes != 4 * count)
    return make_status(StatusCode::kCorruptPayload, name, ": body is ", h.body_bytes,
                       " bytes, expected ", 4 * count, " (", count, " values)");
  const float* body = reinterpret_cast<const float*>(payload.data() + kHeaderBytes);
  if (desc.nonfinite == NonfinitePolicy::kError) {
    const std::uint64_t bad = first_nonfinite_value(body, count);
    if (bad != kNone)
      return make_status(StatusCode::kCorruptPayload, name, ": value[", bad, "] = ", body[bad],
                         " is not finite (nonfinite=error)");
  }
  apply_runs(runs, body, accumulate, alpha, view_of(out));
  return Status::success();
}

}  // namespace gradcomp::kk::blocks
