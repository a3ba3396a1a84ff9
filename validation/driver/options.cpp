// The option state machine of gradcomp-validate (style.md B3): options apply to the cases that
// follow them, comma lists expand to a cartesian product, --reset restores the defaults.
#include <fstream>
#include <sstream>

#include "gradcomp/case_string.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "validate.hpp"

namespace gradcomp::validation {
namespace {

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text) {
    if (ch == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  out.push_back(cur);
  return out;
}

template <class T>
Status parse_uint_list(const std::string& key, const std::string& value, std::uint64_t max,
                       std::vector<T>& out) {
  std::vector<T> list;
  for (const auto& item : split_commas(value)) {
    auto r = parse_uint(key, item);
    if (!r.ok()) return r.status();
    GRADCOMP_CHECK_ARG(r.value() <= max, "--", key, ": ", item, " is out of range (max ", max, ")");
    list.push_back(static_cast<T>(r.value()));
  }
  out = list;
  return Status::success();
}

template <class T, class F>
std::string join(const std::vector<T>& v, F&& f) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + f(v[i]);
  return s;
}

std::string dirname_of(const std::string& path) {
  const auto pos = path.find_last_of('/');
  return pos == std::string::npos ? std::string() : path.substr(0, pos + 1);
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

// One batch file: one case or option per line, '#' starts a comment.
Status read_batch(const std::string& path, std::vector<std::string>& lines) {
  std::ifstream in(path);
  if (!in) return make_status(StatusCode::kIoError, "cannot open batch file ", path);
  std::string line;
  while (std::getline(in, line)) {
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    std::istringstream words(line);
    std::string word;
    while (words >> word) lines.push_back(word);
  }
  return Status::success();
}

Status expand_rec(const std::vector<std::string>& args, const std::string& base_dir, int depth,
                  Settings& s, ParsedArgs& out) {
  GRADCOMP_CHECK_ARG(depth < 16, "batch files nest deeper than 16 levels (a cycle?)");
  for (const auto& arg : args) {
    if (arg == "--reset") {
      // --impl and --if-unimplemented are global knobs (like benchdnn's --engine): CTest names
      // the implementation on the command line and the batch files start with --reset.
      Settings fresh;
      fresh.impls = s.impls;
      fresh.if_unimplemented = s.if_unimplemented;
      s = fresh;
    } else if (arg.rfind("--batch=", 0) == 0) {
      std::string path = arg.substr(8);
      if (!path.empty() && path[0] != '/' && !base_dir.empty() && file_exists(base_dir + path))
        path = base_dir + path;
      std::vector<std::string> lines;
      GRADCOMP_TRY(read_batch(path, lines));
      GRADCOMP_TRY(expand_rec(lines, dirname_of(path), depth + 1, s, out));
    } else if (arg.rfind("--json=", 0) == 0) {
      out.json_path = arg.substr(7);
    } else if (arg.rfind("--", 0) == 0) {
      GRADCOMP_TRY(parse_option(arg, s));
    } else {
      GRADCOMP_TRY(expand_case(arg, s, out.cases));
    }
  }
  return Status::success();
}

}  // namespace

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kCorrectness: return "C";
    case Mode::kBitwise: return "B";
    case Mode::kStatistical: return "S";
    case Mode::kList: return "L";
  }
  return "?";
}

const char* fill_name(Fill f) {
  switch (f) {
    case Fill::kExact: return "exact";
    case Fill::kReal: return "real";
    case Fill::kEdge: return "edge";
  }
  return "?";
}

Result<Mode> parse_mode(const std::string& text) {
  if (text == "C" || text == "c") return Mode::kCorrectness;
  if (text == "B" || text == "b") return Mode::kBitwise;
  if (text == "S" || text == "s") return Mode::kStatistical;
  if (text == "L" || text == "l") return Mode::kList;
  return make_status(StatusCode::kInvalidArgument, "--mode: unknown mode '", text,
                     "' (expected C, B, S or L)");
}

Result<Fill> parse_fill(const std::string& text) {
  if (text == "exact") return Fill::kExact;
  if (text == "real") return Fill::kReal;
  if (text == "edge") return Fill::kEdge;
  return make_status(StatusCode::kInvalidArgument, "--fill: unknown fill '", text,
                     "' (expected exact, real or edge)");
}

bool Settings::operator==(const Settings& o) const {
  return impls == o.impls && modes == o.modes && fills == o.fills && steps == o.steps &&
         ranks == o.ranks && tensor_ids == o.tensor_ids && sizes == o.sizes && trials == o.trials &&
         if_unimplemented == o.if_unimplemented;
}

std::vector<std::string> Settings::to_args() const {
  const Settings d;
  std::vector<std::string> a;
  auto num = [](auto v) { return std::to_string(v); };
  if (impls != d.impls)
    a.push_back("--impl=" + join(impls, [](const std::string& x) { return x; }));
  if (modes != d.modes)
    a.push_back("--mode=" + join(modes, [](Mode m) { return std::string(mode_name(m)); }));
  if (fills != d.fills)
    a.push_back("--fill=" + join(fills, [](Fill f) { return std::string(fill_name(f)); }));
  if (steps != d.steps) a.push_back("--step=" + join(steps, num));
  if (ranks != d.ranks) a.push_back("--rank=" + join(ranks, num));
  if (tensor_ids != d.tensor_ids) a.push_back("--tensor-id=" + join(tensor_ids, num));
  if (sizes != d.sizes) a.push_back("--sizes=" + join(sizes, num));
  if (trials != d.trials) a.push_back("--trials=" + num(trials));
  if (if_unimplemented != d.if_unimplemented)
    a.push_back(std::string("--if-unimplemented=") +
                (if_unimplemented == IfUnimplemented::kSkip ? "skip" : "fail"));
  return a;
}

Status parse_option(const std::string& arg, Settings& s) {
  const auto eq = arg.find('=');
  GRADCOMP_CHECK_ARG(arg.rfind("--", 0) == 0 && eq != std::string::npos && eq > 2,
                     "unknown option '", arg, "' (expected --key=value; see docs/validate.md)");
  const std::string key = arg.substr(2, eq - 2);
  const std::string value = arg.substr(eq + 1);
  GRADCOMP_CHECK_ARG(!value.empty(), "--", key, ": empty value");
  constexpr std::uint64_t kU32Max = 0xFFFFFFFFull;
  if (key == "impl") {
    std::vector<std::string> list;
    for (const auto& item : split_commas(value)) {
      GRADCOMP_CHECK_ARG(!item.empty(), "--impl: empty name in '", value, "'");
      if (item == "any") {
        list.clear();  // "any" = the default: every non-reference implementation
        break;
      }
      list.push_back(item);
    }
    s.impls = list;
  } else if (key == "mode") {
    std::vector<Mode> list;
    for (const auto& item : split_commas(value)) {
      auto m = parse_mode(item);
      if (!m.ok()) return m.status();
      list.push_back(m.value());
    }
    s.modes = list;
  } else if (key == "fill") {
    std::vector<Fill> list;
    for (const auto& item : split_commas(value)) {
      auto f = parse_fill(item);
      if (!f.ok()) return f.status();
      list.push_back(f.value());
    }
    s.fills = list;
  } else if (key == "step") {
    GRADCOMP_TRY(parse_uint_list(key, value, kU32Max, s.steps));
  } else if (key == "rank") {
    GRADCOMP_TRY(parse_uint_list(key, value, kU32Max, s.ranks));
  } else if (key == "tensor-id") {
    GRADCOMP_TRY(parse_uint_list(key, value, kU32Max, s.tensor_ids));
  } else if (key == "sizes") {
    GRADCOMP_TRY(parse_uint_list(key, value, ~std::uint64_t{0}, s.sizes));
  } else if (key == "trials") {
    std::vector<std::uint32_t> t;
    GRADCOMP_TRY(parse_uint_list(key, value, 1u << 20, t));
    GRADCOMP_CHECK_ARG(t.size() == 1 && t[0] >= 2, "--trials: one value >= 2, got ", value);
    s.trials = t[0];
  } else if (key == "if-unimplemented") {
    GRADCOMP_CHECK_ARG(value == "fail" || value == "skip", "--if-unimplemented: expected fail or ",
                       "skip, got '", value, "'");
    s.if_unimplemented = value == "skip" ? IfUnimplemented::kSkip : IfUnimplemented::kFail;
  } else {
    return make_status(StatusCode::kInvalidArgument, "unknown option '--", key,
                       "' (see docs/validate.md)");
  }
  return Status::success();
}

Status expand_case(const std::string& text, const Settings& s, std::vector<Case>& out) {
  auto cs = parse_case_string(text);
  if (!cs.ok()) return cs.status();
  bool has_n = false;
  for (const auto& kv : cs.value().options) has_n = has_n || kv.first == "n";
  std::vector<CompressorDesc> descs;
  if (has_n || s.sizes.empty()) {
    auto d = parse_compressor(text);
    if (!d.ok()) return d.status();
    descs.push_back(d.value());
  } else {
    for (std::uint64_t n : s.sizes) {
      CaseString with_n = cs.value();
      with_n.options.insert(with_n.options.begin(), {"n", std::to_string(n)});
      auto d = parse_compressor(with_n.to_string());
      if (!d.ok()) return d.status();
      descs.push_back(d.value());
    }
  }
  // The default implementation list: every non-reference implementation built (ref:any when
  // this build has none, so the harness still runs the oracle against itself).
  std::vector<std::string> impls = s.impls;
  const bool named = !impls.empty();
  if (!named) {
    for (const auto& impl : compressor_impls())
      if (!impl.is_reference) impls.push_back(impl.name);
    if (impls.empty()) impls.push_back("ref:any");
  }
  for (const auto& d : descs)
    for (const auto& impl : impls)
      for (Mode m : s.modes)
        for (Fill f : s.fills)
          for (auto step : s.steps)
            for (auto rank : s.ranks)
              for (auto tid : s.tensor_ids) {
                Case c;
                c.desc = d;
                c.impl = impl;
                c.impl_named = named;
                c.mode = m;
                c.fill = f;
                c.step = step;
                c.rank = rank;
                c.tensor_id = tid;
                c.trials = s.trials;
                c.if_unimplemented = s.if_unimplemented;
                out.push_back(c);
              }
  return Status::success();
}

Status expand_args(const std::vector<std::string>& args, ParsedArgs& out) {
  Settings s;
  return expand_rec(args, "", 0, s, out);
}

std::string Case::repro(const std::string& impl_name) const {
  std::string r = desc.to_string() + " --impl=" + impl_name + " --mode=" + mode_name(mode) +
                  " --fill=" + fill_name(fill);
  if (step != 0) r += " --step=" + std::to_string(step);
  if (rank != 0) r += " --rank=" + std::to_string(rank);
  if (tensor_id != 0) r += " --tensor-id=" + std::to_string(tensor_id);
  if (mode == Mode::kStatistical && trials != Settings().trials)
    r += " --trials=" + std::to_string(trials);
  return r;
}

}  // namespace gradcomp::validation
