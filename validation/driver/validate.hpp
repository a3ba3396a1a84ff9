// gradcomp-validate: a benchdnn-style driver that runs every implementation of a compressor
// against the oracle (ref:any) (style.md B3, B4; docs/validate.md). The pieces live in separate
// files so the harness self-tests (validation/self) can call them one at a time:
//   options.cpp  the option state machine, batch files, case expansion, canonical printing
//   fill.cpp     input fills: pure functions of (seed, kind, rank, element index)
//   compare.cpp  the ONE comparison table (docs/tolerances.md) and the comparators
//   stats.cpp    mode S: unbiasedness with Bonferroni thresholds
//   run.cpp      one case: run, compare, status line; the summary and the JSON
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/compressor.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::validation {

// ---- options --------------------------------------------------------------------------------

enum class Mode : char { kCorrectness = 'C', kBitwise = 'B', kStatistical = 'S', kList = 'L' };
enum class Fill : std::uint8_t { kExact, kReal, kEdge };
enum class IfUnimplemented : std::uint8_t { kFail, kSkip };

const char* mode_name(Mode m);  // "C", "B", "S", "L"
const char* fill_name(Fill f);  // "exact", "real", "edge"
Result<Mode> parse_mode(const std::string& text);
Result<Fill> parse_fill(const std::string& text);

// The option state: every list expands to a cartesian product over the cases that follow.
struct Settings {
  std::vector<std::string> impls;  // empty: every non-reference implementation built
  std::vector<Mode> modes = {Mode::kCorrectness};
  std::vector<Fill> fills = {Fill::kExact};
  std::vector<std::uint32_t> steps = {0};
  std::vector<std::uint32_t> ranks = {0};
  std::vector<std::uint32_t> tensor_ids = {0};
  std::vector<std::uint64_t> sizes;  // n for case strings without n=; empty: the case's own n
  std::uint32_t trials = 256;        // mode S: trials (distinct steps) per case
  IfUnimplemented if_unimplemented = IfUnimplemented::kFail;

  bool operator==(const Settings& o) const;
  // The options that differ from the defaults, as command-line arguments ("--fill=exact,real").
  // parse_option() of each of them on a default Settings gives back *this.
  std::vector<std::string> to_args() const;
};

// One expanded case: a descriptor and one value of every option.
struct Case {
  CompressorDesc desc;
  std::string impl;         // "" = default (every non-reference implementation)
  bool impl_named = false;  // named explicitly with --impl (then UNIMPLEMENTED is a failure)
  Mode mode = Mode::kCorrectness;
  Fill fill = Fill::kExact;
  std::uint32_t step = 0;
  std::uint32_t rank = 0;
  std::uint32_t tensor_id = 0;
  std::uint32_t trials = 256;
  IfUnimplemented if_unimplemented = IfUnimplemented::kFail;

  // "<case> --impl=<name> --mode=<m> --fill=<f> [--step= --rank= --tensor-id= --trials=]":
  // run it as gradcomp-validate arguments to reproduce this case alone.
  std::string repro(const std::string& impl_name) const;
};

// Applies one option ("--fill=real") to the settings. Unknown options and bad values are
// kInvalidArgument naming the option. Driver-level options (--batch, --json) are not handled
// here.
Status parse_option(const std::string& arg, Settings& s);

// Expands the arguments (options, case strings, --batch=FILE, --reset) into cases, in order.
// Batch files are resolved relative to the including file's folder, then the working
// directory. `json_path` receives --json=FILE.
struct ParsedArgs {
  std::vector<Case> cases;
  std::string json_path;
};
Status expand_args(const std::vector<std::string>& args, ParsedArgs& out);

// Cases of one case string under the current settings (cartesian product; sizes fill in n).
Status expand_case(const std::string& text, const Settings& s, std::vector<Case>& out);

// ---- fills ----------------------------------------------------------------------------------

enum class DataKind : std::uint32_t { kSrc = 1, kAcc = 2 };

// Element i of the tensor of (seed, kind, rank): independent of the thread schedule and of n.
float fill_value(Fill f, std::uint64_t seed, DataKind kind, std::uint32_t rank, std::uint64_t i);
void fill(Fill f, std::uint64_t seed, DataKind kind, std::uint32_t rank, Span<float> out);

// ---- comparison (the table of docs/tolerances.md) ------------------------------------------

// One named row of the table.
struct Tolerance {
  const char* name;
  bool bitwise;      // compare IEEE bit patterns (-0.0 != +0.0, NaN payload-insensitive)
  double rel;        // max |got - exp| / max(|exp|, floor)
  double abs_floor;  // floor of the denominator, times the tensor's scale (max |exp|)
};
// Floats on exact fills, and payloads decoded from byte-identical payloads on any fill.
extern const Tolerance kExactFloats;
// Elementwise maps with a fixed operation order (decompress, decompress_accumulate).
extern const Tolerance kElementwiseF32;
// Values that went through a float reduction (scales, norms) on real/edge fills.
extern const Tolerance kReductionF32;

// Which tolerance applies to decoded values: exact fills and identical payloads are exact.
const Tolerance& decode_tolerance(Fill f, bool payload_identical);
const Tolerance& accumulate_tolerance(Fill f);

struct Mismatch {
  std::uint64_t index;
  double expected;
  double got;
  double diff;
  double rdiff;
};

struct CompareResult {
  std::uint64_t nerr = 0;
  std::uint64_t compared = 0;
  double max_diff = 0;
  double max_rdiff = 0;
  std::vector<Mismatch> first;  // the first 10 mismatches
  std::string what;             // what was compared ("payload bytes", "decompress", ...)
  bool ok() const { return nerr == 0; }
  void merge_stats(const CompareResult& o);  // max_diff/max_rdiff/nerr of several checks
};

constexpr std::size_t kMaxMismatchesShown = 10;

// Payload bytes: exact, length included (padding bits are part of the bytes).
CompareResult compare_bytes(Span<const std::uint8_t> expected, Span<const std::uint8_t> got);
// Float tensors under one row of the table. NaN must meet NaN, +-inf must meet the same inf.
CompareResult compare_floats(Span<const float> expected, Span<const float> got,
                             const Tolerance& tol, const char* what);
// The support (which elements are nonzero) must be identical: indices are exact.
CompareResult compare_support(Span<const float> expected, Span<const float> got);

// The mistrust rule: a comparison where the oracle's output has too few nonzeros relative to
// what the compressor is supposed to keep proves little. Returns "" when trusted, else why.
constexpr double kZeroTrustFraction = 0.30;  // benchdnn's zero_trust_percent
std::uint64_t expected_nonzeros(const CompressorDesc& desc, Span<const float> in, bool* strict);
std::string mistrust_reason(const CompressorDesc& desc, Span<const float> in,
                            Span<const float> oracle_out);

// ---- mode S -----------------------------------------------------------------------------------

// Two-sided normal quantile for a Bonferroni bound: P(|Z| > z) = alpha / tests.
double bonferroni_z(double alpha, double tests);
constexpr double kStatAlpha = 1e-6;

// True for the compressors and options mode S tests (qsgd, terngrad clip=0, randk
// rescale=unbiased or none, qsgd_topk, qsgd_randk); otherwise why not.
std::string statistical_unsupported(const CompressorDesc& desc);

struct StatResult {
  bool ok = true;
  std::string reason;
  double max_z = 0;
  double mean_z2 = 0;
  std::uint64_t resolved = 0;  // elements in the mean z^2 (normal approximation valid)
  std::uint64_t nerr = 0;
  std::vector<Mismatch> first;  // index, target, mean, |mean - target|, z
};
// Samples: trials x n decoded outputs (row-major); target: E[C(x)]. Checks per-element z-scores
// (theoretical two-point variance from the observed support), mean z^2, and two aggregate sums.
StatResult check_unbiased(Span<const double> samples, std::uint32_t trials,
                          Span<const double> target);

// ---- running ----------------------------------------------------------------------------------

enum class CaseStatus { kPassed, kFailed, kMistrusted, kUnimplemented, kSkipped, kListed };
const char* case_status_name(CaseStatus s);

struct CaseResult {
  CaseStatus status = CaseStatus::kPassed;
  bool counts_as_failure = false;
  std::string impl_name;
  std::string reason;
  CompareResult stats;
  std::vector<std::string> details;  // mismatch dumps printed on failure
  std::uint64_t payload_bytes = 0;
  double seconds = 0;
};

CaseResult run_case(const Case& c);

}  // namespace gradcomp::validation
