// The comparison table of gradcomp-validate. This file and docs/tolerances.md are the ONLY
// places where tolerances live (style.md B4 "Comparison rules"): call sites name a row.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "validate.hpp"

namespace gradcomp::validation {

//                                      name              bitwise  rel     abs_floor
const Tolerance kExactFloats = {"exact", true, 0.0, 0.0};
const Tolerance kElementwiseF32 = {"elementwise_f32", false, 4e-6, 1e-6};
const Tolerance kReductionF32 = {"reduction_f32", false, 2e-5, 1e-5};

const Tolerance& decode_tolerance(Fill f, bool payload_identical) {
  // Exact fills make every reduction exact in any order, so even a parallel backend must
  // reproduce the oracle bit for bit. On real/edge fills a parallel reduction may round the
  // scale differently; the rounding then shows in every decoded value of that block.
  if (f == Fill::kExact) return kExactFloats;
  return payload_identical ? kElementwiseF32 : kReductionF32;
}

const Tolerance& accumulate_tolerance(Fill f) {
  // out += alpha * D(p): the oracle accumulates in double and rounds once; a kernel that uses a
  // float FMA differs by at most one rounding. Exact fills with alpha = 0.5 are exact either way.
  return f == Fill::kExact ? kExactFloats : kElementwiseF32;
}

void CompareResult::merge_stats(const CompareResult& o) {
  nerr += o.nerr;
  compared += o.compared;
  max_diff = std::max(max_diff, o.max_diff);
  max_rdiff = std::max(max_rdiff, o.max_rdiff);
  for (const auto& m : o.first)
    if (first.size() < kMaxMismatchesShown) first.push_back(m);
}

namespace {

void record(CompareResult& r, std::uint64_t i, double exp, double got, double diff, double rdiff) {
  ++r.nerr;
  if (r.first.size() < kMaxMismatchesShown) r.first.push_back({i, exp, got, diff, rdiff});
}

std::uint32_t bits_of(float v) {
  std::uint32_t b = 0;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

}  // namespace

CompareResult compare_bytes(Span<const std::uint8_t> expected, Span<const std::uint8_t> got) {
  CompareResult r;
  r.what = "payload bytes";
  const std::size_t common = std::min(expected.size(), got.size());
  r.compared = std::max(expected.size(), got.size());
  for (std::size_t i = 0; i < common; ++i) {
    if (expected[i] == got[i]) continue;
    const double diff = std::abs(double(expected[i]) - double(got[i]));
    r.max_diff = std::max(r.max_diff, diff);
    record(r, i, expected[i], got[i], diff, 0.0);
  }
  if (expected.size() != got.size()) {
    // One mismatch per missing/extra byte, reported at the first of them.
    const std::uint64_t extra = r.compared - common;
    record(r, common, double(expected.size()), double(got.size()), double(extra), 0.0);
    r.nerr += extra - 1;
  }
  return r;
}

CompareResult compare_floats(Span<const float> expected, Span<const float> got,
                             const Tolerance& tol, const char* what) {
  CompareResult r;
  r.what = what;
  if (expected.size() != got.size()) {
    r.compared = std::max(expected.size(), got.size());
    record(r, 0, double(expected.size()), double(got.size()), 0, 0);
    return r;
  }
  r.compared = expected.size();
  double scale = 0;  // the tensor's scale for the absolute floor
  for (float e : expected)
    if (std::isfinite(e)) scale = std::max(scale, double(std::abs(e)));
  const double floor = std::max(tol.abs_floor * scale, 1e-300);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const float e = expected[i];
    const float g = got[i];
    if (std::isnan(e) || std::isnan(g)) {
      if (!(std::isnan(e) && std::isnan(g))) record(r, i, e, g, INFINITY, INFINITY);
      continue;
    }
    if (std::isinf(e) || std::isinf(g)) {
      if (e != g) record(r, i, e, g, INFINITY, INFINITY);
      continue;
    }
    const double diff = std::abs(double(e) - double(g));
    const double rdiff = diff / std::max(double(std::abs(e)), floor);
    r.max_diff = std::max(r.max_diff, diff);
    r.max_rdiff = std::max(r.max_rdiff, rdiff);
    const bool bad = tol.bitwise ? bits_of(e) != bits_of(g) : rdiff > tol.rel;
    if (bad) record(r, i, e, g, diff, rdiff);
  }
  return r;
}

CompareResult compare_support(Span<const float> expected, Span<const float> got) {
  CompareResult r;
  r.what = "support (nonzero pattern)";
  r.compared = expected.size();
  if (expected.size() != got.size()) {
    record(r, 0, double(expected.size()), double(got.size()), 0, 0);
    return r;
  }
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const bool e = expected[i] != 0.0f;
    const bool g = got[i] != 0.0f;
    if (e != g) record(r, i, expected[i], got[i], std::abs(double(expected[i]) - got[i]), 1.0);
  }
  return r;
}

// How many nonzeros the oracle's output should have at least, and whether the count is a
// deterministic function of the input ("strict": the 30% zero-trust rule applies) or random
// (stochastic quantizers and random supports: only an all-zero output is mistrusted, and only
// when the compressor should have kept enough for that to be unlikely).
std::uint64_t expected_nonzeros(const CompressorDesc& desc, Span<const float> in, bool* strict) {
  // Inputs the compressor can represent as nonzero: fp16 flushes below 2^-25, bf16 (8 exponent
  // bits but 7 mantissa bits) flushes the float denormals the edge fill uses.
  double tiny = 0.0;
  if (desc.kind == CompressorKind::kFp16) tiny = std::ldexp(1.0, -25);
  if (desc.kind == CompressorKind::kBf16) tiny = std::ldexp(1.0, -127);
  std::uint64_t nnz = 0;
  for (float v : in) nnz += std::abs(double(v)) > tiny;
  const std::uint64_t n = in.size();
  const std::uint64_t k = n == 0 ? 0 : sparsifier_k(desc, n);
  *strict = true;
  switch (desc.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kFp16:
    case CompressorKind::kBf16:
    case CompressorKind::kSign:
    case CompressorKind::kBlockSign: return nnz;
    case CompressorKind::kTopK:
    case CompressorKind::kSignTopK: return std::min(k, nnz);
    case CompressorKind::kDgc:  // the sampled threshold may keep fewer than k (|S| <= k)
      return desc.selection == DgcSelection::kExact ? std::min(k, nnz) : std::min(k, nnz) / 2;
    case CompressorKind::kThreshold: {
      std::uint64_t above = 0;
      for (float v : in) above += std::abs(double(v)) > desc.tau;
      return above;
    }
    case CompressorKind::kRandK:
    case CompressorKind::kQsgdRandK: *strict = false; return n == 0 ? 0 : k * nnz / n;
    case CompressorKind::kQsgdTopK: *strict = false; return std::min(k, nnz);
    default: *strict = false; return nnz;  // qsgd terngrad grbs rbgs powersgd
  }
}

std::string mistrust_reason(const CompressorDesc& desc, Span<const float> in,
                            Span<const float> oracle_out) {
  bool strict = true;
  const std::uint64_t expected = expected_nonzeros(desc, in, &strict);
  std::uint64_t nnz = 0;
  for (float v : oracle_out) nnz += v != 0.0f;
  constexpr std::uint64_t kRelaxedMinExpected = 32;
  if (strict) {
    if (double(nnz) < (1.0 - kZeroTrustFraction) * double(expected))
      return "oracle output has " + std::to_string(nnz) + " nonzeros, expected >= 70% of " +
             std::to_string(expected);
  } else if (nnz == 0 && expected >= kRelaxedMinExpected) {
    return "oracle output is all zero but the compressor should keep ~" + std::to_string(expected);
  }
  return "";
}

}  // namespace gradcomp::validation
