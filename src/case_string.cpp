#include "gradcomp/case_string.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace gradcomp {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-';
}

bool valid_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_name_char(c)) return false;
  return true;
}

// Keys may also contain '.', for prefixed sub-options such as "up.density".
bool valid_key(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (char c : s)
    if (!is_name_char(c) && c != '.') return false;
  return true;
}

}  // namespace

std::string CaseString::to_string() const {
  std::string out = name;
  for (std::size_t i = 0; i < options.size(); ++i) {
    out += (i == 0) ? ':' : ',';
    out += options[i].first;
    out += '=';
    out += options[i].second;
  }
  return out;
}

Result<CaseString> parse_case_string(std::string_view text) {
  CaseString cs;
  const std::size_t colon = text.find(':');
  cs.name = std::string(text.substr(0, colon));
  if (!valid_name(cs.name)) {
    return make_status(StatusCode::kInvalidArgument, "bad case string '", text,
                       "': the name before ':' must be non-empty [a-z0-9_+-]");
  }
  if (colon == std::string_view::npos) return cs;
  std::string_view rest = text.substr(colon + 1);
  if (rest.empty()) {
    return make_status(StatusCode::kInvalidArgument, "bad case string '", text,
                       "': nothing after ':'");
  }
  while (true) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return make_status(StatusCode::kInvalidArgument, "bad case string '", text, "': option '",
                         item, "' is not key=value");
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (!valid_key(key)) {
      return make_status(StatusCode::kInvalidArgument, "bad case string '", text, "': key '", key,
                         "' must be non-empty [a-z0-9_+-.]");
    }
    if (value.empty()) {
      return make_status(StatusCode::kInvalidArgument, "bad case string '", text,
                         "': empty value for key '", key, "'");
    }
    for (char c : value) {
      if (std::isspace(static_cast<unsigned char>(c)) || c == ':' || c == '=') {
        return make_status(StatusCode::kInvalidArgument, "bad case string '", text, "': value of '",
                           key, "' contains '", c, "'");
      }
    }
    for (const auto& kv : cs.options) {
      if (kv.first == key) {
        return make_status(StatusCode::kInvalidArgument, "bad case string '", text, "': key '", key,
                           "' given twice");
      }
    }
    cs.options.emplace_back(std::string(key), std::string(value));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return cs;
}

std::string format_double(double v) {
  // Shortest representation that reads back to the same double (%.17g always does; try
  // shorter first so that 0.001 prints as 0.001).
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

Result<double> parse_double(std::string_view key, std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0') {
    return make_status(StatusCode::kInvalidArgument, "option '", key, "': '", text,
                       "' is not a number");
  }
  if (!std::isfinite(v)) {
    return make_status(StatusCode::kInvalidArgument, "option '", key, "': '", text,
                       "' is not finite");
  }
  return v;
}

Result<unsigned long long> parse_uint(std::string_view key, std::string_view text) {
  unsigned long long v = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  const auto r = std::from_chars(first, last, v);
  if (r.ec == std::errc::result_out_of_range) {
    return make_status(StatusCode::kInvalidArgument, "option '", key, "': '", text,
                       "' is too large");
  }
  if (r.ec != std::errc() || r.ptr != last) {
    return make_status(StatusCode::kInvalidArgument, "option '", key, "': '", text,
                       "' is not a non-negative integer");
  }
  return v;
}

}  // namespace gradcomp
