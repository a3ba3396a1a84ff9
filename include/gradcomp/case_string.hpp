// The case-string grammar shared by every descriptor (compressors, later presets):
//
//     case   := name [ ':' option { ',' option } ]
//     option := key '=' value
//     name := [a-z0-9_+-]+   key := [a-z0-9_+-.]+   value := any characters except ',', ':',
//                                                     '=' and whitespace
//
// Examples: "topk:density=0.001,n=1048579,seed=7", "blocksign:block=256,scale=l2".
// Keys may not repeat. The same string names a validation case, a benchmark and a report row.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gradcomp/status.hpp"

namespace gradcomp {

struct CaseString {
  std::string name;
  std::vector<std::pair<std::string, std::string>> options;  // in the order written

  // Canonical text: "name:k1=v1,k2=v2" (or just "name" without options).
  std::string to_string() const;
  bool operator==(const CaseString& o) const { return name == o.name && options == o.options; }
};

Result<CaseString> parse_case_string(std::string_view text);

// Number formatting used by every printer so that parse(print(x)) == x holds exactly:
// integers in decimal, doubles with the shortest digits that read back to the same value.
std::string format_double(double v);
Result<double> parse_double(std::string_view key, std::string_view text);
Result<unsigned long long> parse_uint(std::string_view key, std::string_view text);

}  // namespace gradcomp
