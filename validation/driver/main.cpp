// gradcomp-validate: every implementation against the oracle, one line per case
// (docs/validate.md). Exit status: 0 all good, 1 any FAILED / MISTRUSTED / required
// UNIMPLEMENTED, 2 bad arguments, 77 nothing ran because every case was SKIPPED (CTest's
// SKIP_RETURN_CODE).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include "gradcomp/case_string.hpp"
#include "validate.hpp"

namespace {

using namespace gradcomp;
using namespace gradcomp::validation;

constexpr const char* kUsage =
    "usage: gradcomp-validate [--impl=kk:serial|ref:any|any] [--mode=C|B|S|L]\n"
    "                         [--fill=exact|real|edge] [--step=N] [--rank=N] [--tensor-id=N]\n"
    "                         [--sizes=N,...] [--trials=N] [--if-unimplemented=fail|skip]\n"
    "                         [--json=FILE] [--batch=FILE] [--reset] CASE...\n"
    "  CASE: a compressor case string, e.g. topk:density=0.01,n=4097,seed=7\n"
    "  options apply to the cases that follow; comma lists expand to a cartesian product.\n"
    "  See docs/validate.md and docs/tolerances.md.\n";

std::string json_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      o += '\\';
      o += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      o += buf;
    } else {
      o += ch;
    }
  }
  return o;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  return format_double(v);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  ParsedArgs parsed;
  const Status st = expand_args(args, parsed);
  if (!st.ok()) {
    std::cerr << "gradcomp-validate: " << st.to_string() << "\n";
    return 2;
  }

  std::map<CaseStatus, std::size_t> counts;
  std::size_t failures = 0;
  double total_s = 0;
  std::string json_cases;
  for (std::size_t idx = 0; idx < parsed.cases.size(); ++idx) {
    const Case& c = parsed.cases[idx];
    const CaseResult r = run_case(c);
    ++counts[r.status];
    failures += r.counts_as_failure;
    total_s += r.seconds;
    const std::string repro = c.repro(r.impl_name);
    std::string line = std::to_string(idx) + ":" + case_status_name(r.status);
    if (!r.reason.empty()) line += " (" + r.reason + ")";
    if (r.status != CaseStatus::kListed && r.status != CaseStatus::kSkipped &&
        r.status != CaseStatus::kUnimplemented) {
      line += " max_diff=" + format_double(r.stats.max_diff) +
              " max_rdiff=" + format_double(r.stats.max_rdiff) +
              " nerr=" + std::to_string(r.stats.nerr);
    }
    line += " __REPRO: " + repro;
    std::cout << line << "\n";
    if (r.status == CaseStatus::kFailed)
      for (const auto& d : r.details) std::cout << d << "\n";
    std::cout.flush();
    if (!parsed.json_path.empty()) {
      json_cases +=
          std::string(json_cases.empty() ? "" : ",\n") + "    {\"idx\": " + std::to_string(idx) +
          ", \"case\": \"" + json_escape(c.desc.to_string()) + "\", \"compressor\": \"" +
          compressor_name(c.desc.kind) + "\", \"n\": " + std::to_string(c.desc.n) +
          ", \"impl\": \"" + json_escape(r.impl_name) + "\", \"mode\": \"" + mode_name(c.mode) +
          "\", \"fill\": \"" + fill_name(c.fill) + "\", \"step\": " + std::to_string(c.step) +
          ", \"rank\": " + std::to_string(c.rank) +
          ", \"tensor_id\": " + std::to_string(c.tensor_id) + ", \"status\": \"" +
          case_status_name(r.status) + "\", \"reason\": \"" + json_escape(r.reason) +
          "\", \"max_diff\": " + json_number(r.stats.max_diff) +
          ", \"max_rdiff\": " + json_number(r.stats.max_rdiff) +
          ", \"nerr\": " + std::to_string(r.stats.nerr) +
          ", \"payload_bytes\": " + std::to_string(r.payload_bytes) +
          ", \"seconds\": " + json_number(r.seconds) + ", \"repro\": \"" + json_escape(repro) +
          "\"}";
    }
  }

  const CaseStatus order[] = {CaseStatus::kPassed,     CaseStatus::kFailed,
                              CaseStatus::kMistrusted, CaseStatus::kUnimplemented,
                              CaseStatus::kSkipped,    CaseStatus::kListed};
  std::string summary = "tests:" + std::to_string(parsed.cases.size());
  std::string json_summary;
  for (CaseStatus s : order) {
    summary += std::string(" ") + case_status_name(s) + ":" + std::to_string(counts[s]);
    json_summary += std::string(json_summary.empty() ? "" : ", ") + "\"" + case_status_name(s) +
                    "\": " + std::to_string(counts[s]);
  }
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.3f", total_s);
  std::cout << summary << " failures:" << failures << " total: " << secs << "s\n";

  if (!parsed.json_path.empty()) {
    std::ofstream js(parsed.json_path);
    if (!js) {
      std::cerr << "gradcomp-validate: cannot write " << parsed.json_path << "\n";
      return 2;
    }
    js << "{\n  \"tool\": \"gradcomp-validate\",\n  \"schema\": 1,\n  \"summary\": {\"tests\": "
       << parsed.cases.size() << ", " << json_summary << ", \"failures\": " << failures
       << ", \"seconds\": " << json_number(total_s) << "},\n  \"cases\": [\n"
       << json_cases << "\n  ]\n}\n";
  }
  if (failures > 0) return 1;
  const std::size_t ran =
      counts[CaseStatus::kPassed] + counts[CaseStatus::kMistrusted] + counts[CaseStatus::kFailed];
  if (ran == 0 && counts[CaseStatus::kSkipped] > 0) return 77;
  return 0;
}
