// gradcomp: look at a compressor on your own data.
//
//   gradcomp list [NAME]
//   gradcomp compress CASE --input g.npy --payload p.bin
//   gradcomp decompress CASE --payload p.bin --output d.npy
//   gradcomp roundtrip CASE --input g.npy [--output d.npy] [--json]
//   gradcomp survey [--n N] [--seed S] [--json | --markdown]
//   gradcomp presets [NAME]
//   gradcomp simulate PRESET [--workers P] [--objective ls|logistic|mlp] [--split iid|noniid]
//                            [--steps T] [--lr X] ... [--json FILE]
//
// Exit codes: 0 success, 1 a gradcomp error ("gradcomp: <status>" on stderr), 2 a usage error.
// Everything runs on the reference (oracle) compressors and optimizers.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gradcomp/case_string.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/preset.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/ref/simulator.hpp"
#include "gradcomp/rng.hpp"
#include "gradcomp/wire_format.hpp"
#include "npy.hpp"

namespace {

using gradcomp::CompressorDesc;
using gradcomp::CompressorKind;
using gradcomp::make_status;
using gradcomp::Result;
using gradcomp::Span;
using gradcomp::Status;
using gradcomp::StatusCode;

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// ---- usage texts -----------------------------------------------------------------------------

const char kMainUsage[] =
    "usage: gradcomp <command> [options]\n"
    "\n"
    "Look at a gradient compressor on your own data (NumPy .npy files of float32, any shape,\n"
    "C order; the data is flattened). All commands use the reference compressors.\n"
    "\n"
    "commands:\n"
    "  list [NAME]        every compressor (or NAME) with its options and defaults\n"
    "  compress CASE      compress an .npy file into a payload file\n"
    "  decompress CASE    decompress a payload file into an .npy file\n"
    "  roundtrip CASE     compress + decompress; print payload bytes, ratio and errors\n"
    "  survey             every compressor with default options on N(0,1) data\n"
    "  presets [NAME]     every optimizer preset (or NAME) with its options and defaults\n"
    "  simulate PRESET    run a preset with P simulated workers on a synthetic objective\n"
    "  help [COMMAND]     this text, or a command's usage\n"
    "\n"
    "CASE is a compressor case string such as 'topk:density=0.01' (see 'gradcomp list').\n"
    "Run 'gradcomp COMMAND --help' for the options of a command.\n"
    "Exit status: 0 success, 1 gradcomp error, 2 usage error.\n";

const char kContextHelp[] =
    "  --step S           step of the compress call (default 0)\n"
    "  --tensor-id T      tensor id of the compress call (default 0)\n"
    "  --rank R           rank of the caller (default 0)\n";

const char kCaseHelp[] =
    "If CASE has no 'n', n is taken from the data; if it has one, it must agree. If CASE has no\n"
    "'shapes' and the array has 2 or more dimensions, compressors that use the tensor layout\n"
    "(blocksign, qsgd, terngrad, grbs, rbgs, powersgd) get the array's shape as a one-tensor\n"
    "'shapes'.\n";

std::string usage_of(const std::string& cmd) {
  if (cmd == "list") {
    return "usage: gradcomp list [NAME]\n"
           "\n"
           "Prints every compressor's name, summary and options (key, default, help), then the\n"
           "options common to every compressor. With NAME, only that compressor.\n";
  }
  if (cmd == "compress") {
    return std::string(
               "usage: gradcomp compress CASE --input IN.npy --payload OUT.bin [context]\n"
               "\n"
               "Compresses the float32 array in IN.npy and writes the payload (the wire format:\n"
               "32-byte header + body) to OUT.bin.\n"
               "\n"
               "options:\n"
               "  --input FILE       .npy file to compress (required)\n"
               "  --payload FILE     payload file to write (required)\n") +
           kContextHelp + "\n" + kCaseHelp;
  }
  if (cmd == "decompress") {
    return std::string(
               "usage: gradcomp decompress CASE --payload IN.bin --output OUT.npy [--shape S]\n"
               "                           [context]\n"
               "\n"
               "Decompresses a payload written by 'gradcomp compress' into a float32 .npy file.\n"
               "\n"
               "options:\n"
               "  --payload FILE     payload file to read (required)\n"
               "  --output FILE      .npy file to write (required)\n"
               "  --shape S          shape of the output, e.g. 64x27 (default: CASE's single\n"
               "                     tensor shape, else (n,)); like an input's shape it also\n"
               "                     fills in CASE's 'shapes' for layout-dependent compressors\n") +
           kContextHelp +
           "\n"
           "If CASE has no 'n', n is read from the payload header. The context (step, tensor\n"
           "id) must be the one the payload was compressed with.\n";
  }
  if (cmd == "roundtrip") {
    return std::string(
               "usage: gradcomp roundtrip CASE --input IN.npy [--output OUT.npy] [--json]\n"
               "                          [context]\n"
               "\n"
               "Compresses and decompresses IN.npy and prints the canonical case, n, input bytes,\n"
               "payload bytes, ratio (4n / payload bytes), relative L2 error ||x - x'|| / ||x||\n"
               "(n/a for a zero input) and max abs error.\n"
               "\n"
               "options:\n"
               "  --input FILE       .npy file to compress (required)\n"
               "  --output FILE      write the reconstruction here (same shape as the input)\n"
               "  --json             print one JSON object instead of text\n") +
           kContextHelp + "\n" + kCaseHelp;
  }
  if (cmd == "survey") {
    return "usage: gradcomp survey [--n N] [--seed S] [--json | --markdown]\n"
           "\n"
           "Runs every compressor with its default options on N deterministic N(0,1) values\n"
           "(RngStream(S, kTestData, 0, 0, 0).normal(i)) and prints name, payload bytes, the\n"
           "payload_bytes() bound, ratio, relative L2 error, max abs error and the canonical "
           "case.\n"
           "Compressors that fail print their status; then the exit status is 1.\n"
           "\n"
           "options:\n"
           "  --n N              number of values (default 1048576 = 2^20)\n"
           "  --seed S           seed of the data (default 1)\n"
           "  --json             print one JSON object instead of a table\n"
           "  --markdown         print a Markdown table\n";
  }
  if (cmd == "presets") {
    return "usage: gradcomp presets [NAME]\n"
           "\n"
           "Prints every optimizer preset's name, summary and options (key, default, help).\n"
           "Compressor slots (up, down, c1, c2) take sub-options as SLOT.KEY=VALUE, e.g.\n"
           "'gmc:up=topk,up.density=0.05'. With NAME, only that preset.\n";
  }
  if (cmd == "simulate") {
    return "usage: gradcomp simulate PRESET [options]\n"
           "\n"
           "Runs PRESET (a case string, see 'gradcomp presets') with P workers in one process on\n"
           "synthetic data generated from the seed (docs/simulator.md) and prints the loss per\n"
           "step, the parameter checksum (FNV-1a 64 of the evaluation model) and the bytes each\n"
           "worker sent and received.\n"
           "\n"
           "options:\n"
           "  --workers P            simulated workers (default 4)\n"
           "  --objective O          ls | logistic | mlp (default ls)\n"
           "  --split S              iid | noniid (default iid)\n"
           "  --skew X               non-IID: share of a shard from its own labels (default 0.8)\n"
           "  --features D           input dimension (default 16)\n"
           "  --outputs K            regression outputs / classes (default 4)\n"
           "  --hidden H             MLP hidden units (default 8)\n"
           "  --samples-per-worker N samples per worker (default 64)\n"
           "  --samples N            total samples, the same for every P (default: per worker x "
           "P)\n"
           "  --batch B              minibatch per worker; 0 = whole shard (default 0)\n"
           "  --noise X              least squares target noise std (default 0)\n"
           "  --steps T              steps (default 100)\n"
           "  --steps-per-epoch E    epoch = step / E (DGC warm-up; default 10)\n"
           "  --lr X                 learning rate (default 0.05)\n"
           "  --lr-decay X           factor at each milestone (default 0.1)\n"
           "  --milestones M1,M2     steps at which the lr decays (default none)\n"
           "  --seed S               seed of the data, x0 and minibatches (default 1)\n"
           "  --params               record the parameters of every step in the JSON\n"
           "  --json FILE            write the trajectory as one JSON object ('-' = stdout)\n"
           "  --quiet                no per-step table\n";
  }
  if (cmd == "help") {
    return "usage: gradcomp help [COMMAND]\n";
  }
  return kMainUsage;
}

const char* const kCommands[] = {"list",   "compress", "decompress", "roundtrip",
                                 "survey", "presets",  "simulate",   "help"};

bool is_command(const std::string& s) {
  for (const char* c : kCommands)
    if (s == c) return true;
  return false;
}

// ---- argument parsing ------------------------------------------------------------------------

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;  // --flag VALUE
  std::map<std::string, bool> switches;       // --flag
  bool help = false;
};

struct FlagSpec {
  std::vector<std::string> with_value;
  std::vector<std::string> switches;
};

// Returns false (after printing the problem) on a usage error.
bool parse_args(const std::string& cmd, const std::vector<std::string>& argv, const FlagSpec& spec,
                Args* out) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--help" || a == "-h") {
      out->help = true;
      return true;
    }
  }
  auto contains = [](const std::vector<std::string>& v, const std::string& s) {
    for (const auto& x : v)
      if (x == s) return true;
    return false;
  };
  bool only_positional = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (only_positional || a.size() < 2 || a[0] != '-' || a == "-") {
      out->positional.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    std::string name = a, value;
    bool has_inline = false;
    const std::size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_inline = true;
    }
    if (contains(spec.with_value, name)) {
      if (!has_inline) {
        if (i + 1 >= argv.size()) {
          std::cerr << "gradcomp " << cmd << ": option " << name << " needs a value\n\n"
                    << usage_of(cmd);
          return false;
        }
        value = argv[++i];
      }
      if (out->values.count(name)) {
        std::cerr << "gradcomp " << cmd << ": option " << name << " given twice\n\n"
                  << usage_of(cmd);
        return false;
      }
      out->values[name] = value;
    } else if (contains(spec.switches, name) && !has_inline) {
      out->switches[name] = true;
    } else {
      std::cerr << "gradcomp " << cmd << ": unknown option " << a << "\n\n" << usage_of(cmd);
      return false;
    }
  }
  return true;
}

int usage_error(const std::string& cmd, const std::string& what) {
  std::cerr << "gradcomp " << cmd << ": " << what << "\n\n" << usage_of(cmd);
  return kExitUsage;
}

int fail(const Status& s) {
  std::cerr << "gradcomp: " << s.to_string() << "\n";
  return kExitError;
}

bool parse_u64_flag(const std::string& cmd, const Args& args, const std::string& flag,
                    std::uint64_t max, std::uint64_t* out) {
  auto it = args.values.find(flag);
  if (it == args.values.end()) return true;
  auto r = gradcomp::parse_uint(flag, it->second);
  if (!r.ok() || r.value() > max) {
    std::cerr << "gradcomp " << cmd << ": " << flag << " must be an integer in [0, " << max
              << "], got '" << it->second << "'\n\n"
              << usage_of(cmd);
    return false;
  }
  *out = r.value();
  return true;
}

bool parse_context(const std::string& cmd, const Args& args, gradcomp::ref::CompressContext* ctx) {
  std::uint64_t step = 0, tensor = 0, rank = 0;
  if (!parse_u64_flag(cmd, args, "--step", 0xFFFFFFFFu, &step)) return false;
  if (!parse_u64_flag(cmd, args, "--tensor-id", 0xFFFFFFFFu, &tensor)) return false;
  if (!parse_u64_flag(cmd, args, "--rank", 0xFFFFFFFFu, &rank)) return false;
  ctx->step = static_cast<std::uint32_t>(step);
  ctx->tensor_id = static_cast<std::uint32_t>(tensor);
  ctx->rank = static_cast<std::uint32_t>(rank);
  return true;
}

const std::vector<std::string> kContextFlags = {"--step", "--tensor-id", "--rank"};

std::vector<std::string> with_context(std::vector<std::string> flags) {
  flags.insert(flags.end(), kContextFlags.begin(), kContextFlags.end());
  return flags;
}

// ---- descriptors from CASE and the data --------------------------------------------------------

// Compressors whose result depends on the tensor layout (shapes).
bool layout_sensitive(CompressorKind k) {
  switch (k) {
    case CompressorKind::kBlockSign:
    case CompressorKind::kQsgd:
    case CompressorKind::kTernGrad:
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs:
    case CompressorKind::kPowerSgd: return true;
    default: return false;
  }
}

std::string shape_option(const std::vector<std::uint64_t>& shape) {
  std::string s;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += 'x';
    s += std::to_string(shape[i]);
  }
  return s;
}

// Parses CASE, filling in n (when CASE omits it) and a one-tensor 'shapes' from `shape` (when
// CASE omits it, the compressor uses the layout and the shape has >= 2 non-zero extents). If
// CASE gives n, it must equal `n`; `source` names where n came from for the message.
Result<CompressorDesc> desc_for_data(const std::string& text, std::uint64_t n,
                                     const std::vector<std::uint64_t>& shape,
                                     const std::string& source) {
  auto cs = gradcomp::parse_case_string(text);
  if (!cs.ok()) return cs.status();
  auto kind = gradcomp::compressor_kind_from_name(cs->name);
  if (!kind.ok()) return kind.status();
  gradcomp::CaseString filled = cs.value();
  bool has_n = false, has_shapes = false;
  for (const auto& kv : filled.options) {
    has_n |= kv.first == "n";
    has_shapes |= kv.first == "shapes";
  }
  if (!has_n) filled.options.emplace_back("n", std::to_string(n));
  bool nonzero = true;
  for (auto e : shape) nonzero &= e > 0;
  if (!has_shapes && shape.size() >= 2 && nonzero && layout_sensitive(kind.value())) {
    filled.options.emplace_back("shapes", shape_option(shape));
  }
  auto desc = gradcomp::parse_compressor(filled.to_string());
  if (!desc.ok()) return desc.status();
  if (desc->n != n) {
    return make_status(StatusCode::kInvalidArgument, "CASE '", text, "' says n = ", desc->n,
                       " but ", source, " holds n = ", n);
  }
  return desc;
}

// ---- numbers and JSON ---------------------------------------------------------------------------

struct ErrorStats {
  double relative = 0;  // ||x - y|| / ||x||
  bool relative_defined = false;
  double max_abs = 0;
};

ErrorStats error_stats(Span<const float> x, Span<const float> y) {
  double diff = 0, norm = 0, max_abs = 0;
  bool nan = false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    diff += d * d;
    norm += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    if (std::isnan(d)) nan = true;
    if (std::fabs(d) > max_abs) max_abs = std::fabs(d);
  }
  ErrorStats s;
  s.max_abs = nan ? std::nan("") : max_abs;
  if (norm > 0 || std::isnan(norm)) {
    s.relative = std::sqrt(diff) / std::sqrt(norm);
    s.relative_defined = true;
  }
  return s;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Exact (shortest round-trip) number, or null where JSON has no number (NaN, Inf).
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {  // 100, not 1e+02
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  return gradcomp::format_double(v);
}

std::string fixed(double v, int digits) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string sci(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4e", v);
  return buf;
}

double ratio_of(std::uint64_t n, std::uint64_t payload) {
  return payload == 0 ? 0.0 : 4.0 * static_cast<double>(n) / static_cast<double>(payload);
}

// terngrad scaler=shared on one worker: the shared scalers are this worker's own.
Status prepare_context(const CompressorDesc& d, Span<const float> in,
                       gradcomp::ref::CompressContext* ctx, std::vector<float>* scalers) {
  if (d.kind == CompressorKind::kTernGrad && d.scaler == gradcomp::TernScaler::kShared) {
    GRADCOMP_TRY(gradcomp::ref::terngrad_local_scalers(d, in, *scalers));
    ctx->shared_scalers = Span<const float>(*scalers);
  }
  return Status::success();
}

// ---- list --------------------------------------------------------------------------------------

void print_options(const std::vector<gradcomp::OptionInfo>& opts) {
  std::size_t kw = 0, dw = 0;
  for (const auto& o : opts) {
    kw = std::max(kw, o.key.size());
    dw = std::max(dw, o.default_value.size());
  }
  for (const auto& o : opts) {
    std::cout << "    " << o.key << std::string(kw - o.key.size() + 2, ' ') << "= "
              << o.default_value << std::string(dw - o.default_value.size() + 2, ' ') << o.help
              << "\n";
  }
}

int cmd_list(const std::vector<std::string>& argv) {
  Args args;
  if (!parse_args("list", argv, FlagSpec{}, &args)) return kExitUsage;
  if (args.help) {
    std::cout << usage_of("list");
    return kExitOk;
  }
  if (args.positional.size() > 1) return usage_error("list", "too many arguments");
  const auto& catalog = gradcomp::compressor_catalog();
  if (args.positional.size() == 1) {
    auto kind = gradcomp::compressor_kind_from_name(args.positional[0]);
    if (!kind.ok()) return fail(kind.status());
  }
  bool first = true;
  for (const auto& info : catalog) {
    if (!args.positional.empty() && info.name != args.positional[0]) continue;
    if (!first) std::cout << "\n";
    first = false;
    std::cout << info.name << ": " << info.summary
              << (info.variable_size ? " [variable-size payload]" : "") << "\n";
    if (info.options.empty()) {
      std::cout << "    (no compressor-specific options)\n";
    } else {
      print_options(info.options);
    }
  }
  std::cout << "\ncommon options (every compressor):\n";
  print_options(gradcomp::common_options());
  return kExitOk;
}

// ---- compress / decompress / roundtrip ---------------------------------------------------------

int cmd_compress(const std::vector<std::string>& argv) {
  const std::string cmd = "compress";
  Args args;
  if (!parse_args(cmd, argv, FlagSpec{with_context({"--input", "--payload"}), {}}, &args)) {
    return kExitUsage;
  }
  if (args.help) {
    std::cout << usage_of(cmd);
    return kExitOk;
  }
  if (args.positional.size() != 1) {
    return usage_error(cmd, args.positional.empty() ? "missing CASE" : "too many arguments");
  }
  if (!args.values.count("--input")) return usage_error(cmd, "missing --input");
  if (!args.values.count("--payload")) return usage_error(cmd, "missing --payload");
  gradcomp::ref::CompressContext ctx;
  if (!parse_context(cmd, args, &ctx)) return kExitUsage;

  const std::string& input = args.values["--input"];
  auto arr = gradcomp::npy::read_file(input);
  if (!arr.ok()) return fail(arr.status());
  auto desc = desc_for_data(args.positional[0], arr->data.size(), arr->shape, input);
  if (!desc.ok()) return fail(desc.status());
  std::vector<float> scalers;
  Status s = prepare_context(desc.value(), arr->data, &ctx, &scalers);
  if (!s.ok()) return fail(s);
  std::vector<std::uint8_t> payload;
  s = gradcomp::ref::compress(desc.value(), ctx, arr->data, payload);
  if (!s.ok()) return fail(s);
  s = gradcomp::npy::write_bytes(args.values["--payload"], payload);
  if (!s.ok()) return fail(s);
  return kExitOk;
}

// "64x27", "64,27", "5"; "()" or "scalar" for a 0-d array.
bool parse_shape_flag(const std::string& text, std::vector<std::uint64_t>* shape) {
  shape->clear();
  if (text == "()" || text == "scalar") return true;
  std::size_t start = 0;
  while (true) {
    std::size_t end = text.find_first_of("x,", start);
    const std::string part =
        text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    auto r = gradcomp::parse_uint("--shape", part);
    if (!r.ok()) return false;
    shape->push_back(r.value());
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return true;
}

int cmd_decompress(const std::vector<std::string>& argv) {
  const std::string cmd = "decompress";
  Args args;
  if (!parse_args(cmd, argv, FlagSpec{with_context({"--payload", "--output", "--shape"}), {}},
                  &args)) {
    return kExitUsage;
  }
  if (args.help) {
    std::cout << usage_of(cmd);
    return kExitOk;
  }
  if (args.positional.size() != 1) {
    return usage_error(cmd, args.positional.empty() ? "missing CASE" : "too many arguments");
  }
  if (!args.values.count("--payload")) return usage_error(cmd, "missing --payload");
  if (!args.values.count("--output")) return usage_error(cmd, "missing --output");
  gradcomp::ref::CompressContext ctx;
  if (!parse_context(cmd, args, &ctx)) return kExitUsage;
  std::vector<std::uint64_t> out_shape;
  const bool has_shape = args.values.count("--shape") > 0;
  if (has_shape && !parse_shape_flag(args.values["--shape"], &out_shape)) {
    return usage_error(cmd, "--shape must look like 64x27, got '" + args.values["--shape"] + "'");
  }

  const std::string& payload_path = args.values["--payload"];
  auto payload = gradcomp::npy::read_bytes(payload_path);
  if (!payload.ok()) return fail(payload.status());
  const std::string& text = args.positional[0];

  // n: from CASE if it has one (or its 'shapes'), else from the payload header.
  auto cs = gradcomp::parse_case_string(text);
  if (!cs.ok()) return fail(cs.status());
  bool case_has_n = false;
  for (const auto& kv : cs->options) case_has_n |= kv.first == "n" || kv.first == "shapes";
  std::uint64_t n = 0;
  std::string source;
  if (case_has_n) {
    auto parsed = gradcomp::parse_compressor(text);
    if (!parsed.ok()) return fail(parsed.status());
    n = parsed->n;
    source = "CASE";
  } else {
    const auto& p = payload.value();
    if (p.size() < gradcomp::kHeaderBytes) {
      return fail(make_status(StatusCode::kCorruptPayload, payload_path, ": payload is ", p.size(),
                              " bytes, shorter than the ", gradcomp::kHeaderBytes, "-byte header"));
    }
    if (gradcomp::load_u32(p.data()) != gradcomp::kWireMagic) {
      return fail(make_status(StatusCode::kCorruptPayload, payload_path,
                              ": bad magic: not a gradcomp payload"));
    }
    n = gradcomp::load_u64(p.data() + 8);
    source = "the payload header";
  }
  if (has_shape) {
    auto count = gradcomp::npy::element_count(out_shape);
    if (!count.ok()) return fail(count.status());
    if (count.value() != n) {
      return fail(make_status(StatusCode::kInvalidArgument, "--shape ", args.values["--shape"],
                              " holds ", count.value(), " elements but ", source, " says n = ", n));
    }
  }
  auto desc = desc_for_data(text, n, has_shape ? out_shape : std::vector<std::uint64_t>{n}, source);
  if (!desc.ok()) return fail(desc.status());
  if (!has_shape && desc->shapes.empty() && layout_sensitive(desc->kind)) {
    std::cerr << "gradcomp: note: decompressing " << gradcomp::compressor_name(desc->kind)
              << " with a 1-D layout; if the compressed array had 2 or more dimensions, pass "
                 "--shape (or shapes= in CASE) as at compress time\n";
  }
  if (!has_shape) {
    out_shape = desc->shapes.size() == 1 ? desc->shapes[0] : std::vector<std::uint64_t>{desc->n};
  }

  std::vector<float> out(desc->n, 0.0f);
  Status s = gradcomp::ref::decompress(desc.value(), ctx, payload.value(), Span<float>(out));
  if (!s.ok()) return fail(s);
  s = gradcomp::npy::write_file(args.values["--output"], out_shape, out);
  if (!s.ok()) return fail(s);
  return kExitOk;
}

int cmd_roundtrip(const std::vector<std::string>& argv) {
  const std::string cmd = "roundtrip";
  Args args;
  if (!parse_args(cmd, argv, FlagSpec{with_context({"--input", "--output"}), {"--json"}}, &args)) {
    return kExitUsage;
  }
  if (args.help) {
    std::cout << usage_of(cmd);
    return kExitOk;
  }
  if (args.positional.size() != 1) {
    return usage_error(cmd, args.positional.empty() ? "missing CASE" : "too many arguments");
  }
  if (!args.values.count("--input")) return usage_error(cmd, "missing --input");
  gradcomp::ref::CompressContext ctx;
  if (!parse_context(cmd, args, &ctx)) return kExitUsage;

  const std::string& input = args.values["--input"];
  auto arr = gradcomp::npy::read_file(input);
  if (!arr.ok()) return fail(arr.status());
  auto desc = desc_for_data(args.positional[0], arr->data.size(), arr->shape, input);
  if (!desc.ok()) return fail(desc.status());
  std::vector<float> scalers;
  Status s = prepare_context(desc.value(), arr->data, &ctx, &scalers);
  if (!s.ok()) return fail(s);
  std::vector<std::uint8_t> payload;
  s = gradcomp::ref::compress(desc.value(), ctx, arr->data, payload);
  if (!s.ok()) return fail(s);
  std::vector<float> out(desc->n, 0.0f);
  s = gradcomp::ref::decompress(desc.value(), ctx, payload, Span<float>(out));
  if (!s.ok()) return fail(s);
  if (args.values.count("--output")) {
    s = gradcomp::npy::write_file(args.values["--output"], arr->shape, out);
    if (!s.ok()) return fail(s);
  }

  const std::uint64_t n = desc->n;
  const ErrorStats e = error_stats(arr->data, out);
  const double ratio = ratio_of(n, payload.size());
  if (args.switches.count("--json")) {
    std::cout << "{\"case\": " << json_string(desc->to_string()) << ", \"n\": " << n
              << ", \"shape\": [";
    for (std::size_t i = 0; i < arr->shape.size(); ++i) {
      std::cout << (i ? ", " : "") << arr->shape[i];
    }
    std::cout << "], \"input_bytes\": " << 4 * n << ", \"payload_bytes\": " << payload.size()
              << ", \"ratio\": " << json_number(ratio)
              << ", \"relative_error\": " << (e.relative_defined ? json_number(e.relative) : "null")
              << ", \"max_abs_error\": " << json_number(e.max_abs) << "}\n";
  } else {
    std::cout << "case            " << desc->to_string() << "\n"
              << "n               " << n << "  (shape "
              << gradcomp::npy::shape_to_string(arr->shape) << ")\n"
              << "input bytes     " << 4 * n << "\n"
              << "payload bytes   " << payload.size() << "\n"
              << "ratio           " << fixed(ratio, 3) << "\n"
              << "relative error  " << (e.relative_defined ? sci(e.relative) : "n/a") << "\n"
              << "max abs error   " << sci(e.max_abs) << "\n";
  }
  return kExitOk;
}

// ---- survey ------------------------------------------------------------------------------------

struct SurveyRow {
  std::string name;
  std::string case_text;
  Status status;
  std::uint64_t payload = 0;
  std::uint64_t bound = 0;
  double ratio = 0;
  ErrorStats err;
};

int cmd_survey(const std::vector<std::string>& argv) {
  const std::string cmd = "survey";
  Args args;
  if (!parse_args(cmd, argv, FlagSpec{{"--n", "--seed"}, {"--json", "--markdown"}}, &args)) {
    return kExitUsage;
  }
  if (args.help) {
    std::cout << usage_of(cmd);
    return kExitOk;
  }
  if (!args.positional.empty())
    return usage_error(cmd, "unexpected argument " + args.positional[0]);
  std::uint64_t n = std::uint64_t{1} << 20, seed = 1;
  if (!parse_u64_flag(cmd, args, "--n", 0xFFFFFFFFu, &n)) return kExitUsage;
  if (!parse_u64_flag(cmd, args, "--seed", ~std::uint64_t{0}, &seed)) return kExitUsage;
  const bool json = args.switches.count("--json") > 0;
  const bool markdown = args.switches.count("--markdown") > 0;
  if (json && markdown) return usage_error(cmd, "--json and --markdown exclude each other");

  std::vector<float> data(n);
  const gradcomp::RngStream rng(seed, gradcomp::RngPurpose::kTestData, 0, 0, 0);
  for (std::uint64_t i = 0; i < n; ++i) data[i] = static_cast<float>(rng.normal(i));

  std::vector<SurveyRow> rows;
  int failed = 0;
  for (const auto& info : gradcomp::compressor_catalog()) {
    SurveyRow row;
    row.name = info.name;
    row.case_text = info.name + ":n=" + std::to_string(n);
    auto desc = gradcomp::parse_compressor(row.case_text);
    if (desc.ok()) {
      row.case_text = desc->to_string();
      row.bound = gradcomp::ref::payload_bytes(desc.value());
      gradcomp::ref::CompressContext ctx;
      std::vector<float> scalers;
      std::vector<std::uint8_t> payload;
      std::vector<float> out(n, 0.0f);
      row.status = prepare_context(desc.value(), data, &ctx, &scalers);
      if (row.status.ok()) row.status = gradcomp::ref::compress(desc.value(), ctx, data, payload);
      if (row.status.ok()) {
        row.status = gradcomp::ref::decompress(desc.value(), ctx, payload, Span<float>(out));
      }
      if (row.status.ok()) {
        row.payload = payload.size();
        row.ratio = ratio_of(n, row.payload);
        row.err = error_stats(data, out);
      }
    } else {
      row.status = desc.status();
    }
    if (!row.status.ok()) ++failed;
    rows.push_back(std::move(row));
  }

  if (json) {
    std::cout << "{\"n\": " << n << ", \"seed\": " << seed << ", \"input_bytes\": " << 4 * n
              << ", \"failed\": " << failed << ", \"results\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const SurveyRow& r = rows[i];
      std::cout << (i ? ",\n  " : "\n  ") << "{\"name\": " << json_string(r.name)
                << ", \"case\": " << json_string(r.case_text)
                << ", \"ok\": " << (r.status.ok() ? "true" : "false");
      if (r.status.ok()) {
        std::cout << ", \"payload_bytes\": " << r.payload << ", \"payload_bound\": " << r.bound
                  << ", \"ratio\": " << json_number(r.ratio) << ", \"relative_error\": "
                  << (r.err.relative_defined ? json_number(r.err.relative) : "null")
                  << ", \"max_abs_error\": " << json_number(r.err.max_abs);
      } else {
        std::cout << ", \"status\": " << json_string(r.status.to_string())
                  << ", \"code\": " << json_string(gradcomp::status_code_name(r.status.code()));
      }
      std::cout << "}";
    }
    std::cout << "\n]}\n";
  } else {
    // Columns: name, payload, bound, ratio, rel. L2 error, max abs error, case.
    const std::vector<std::string> head = {"compressor",  "payload B",   "bound B", "ratio",
                                           "rel. L2 err", "max abs err", "case"};
    std::vector<std::vector<std::string>> cells;
    for (const auto& r : rows) {
      if (r.status.ok()) {
        cells.push_back({r.name, std::to_string(r.payload), std::to_string(r.bound),
                         fixed(r.ratio, 3), r.err.relative_defined ? sci(r.err.relative) : "n/a",
                         sci(r.err.max_abs), r.case_text});
      } else {
        cells.push_back({r.name, "FAILED: " + r.status.to_string(), "", "", "", "", r.case_text});
      }
    }
    if (markdown) {
      std::cout << "| " << head[0];
      for (std::size_t c = 1; c < head.size(); ++c) std::cout << " | " << head[c];
      std::cout << " |\n|---|---:|---:|---:|---:|---:|---|\n";
      for (const auto& row : cells) {
        std::cout << "| " << row[0];
        for (std::size_t c = 1; c < row.size(); ++c) {
          std::cout << " | " << (c == row.size() - 1 ? "`" + row[c] + "`" : row[c]);
        }
        std::cout << " |\n";
      }
    } else {
      std::cout << "gradcomp survey: n = " << n << " N(0,1) float32 values (seed " << seed << "), "
                << 4 * n << " input bytes, reference compressors, default options\n\n";
      std::vector<std::size_t> width(head.size());
      for (std::size_t c = 0; c < head.size(); ++c) width[c] = head[c].size();
      for (const auto& row : cells) {
        if (row[2].empty()) {  // a failure spans the numeric columns
          width[0] = std::max(width[0], row[0].size());
          continue;
        }
        for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
      }
      auto print_row = [&](const std::vector<std::string>& row) {
        std::string line;
        for (std::size_t c = 0; c + 1 < row.size(); ++c) {
          const std::size_t pad = width[c] > row[c].size() ? width[c] - row[c].size() : 0;
          if (c == 0) {
            line += row[c] + std::string(pad, ' ');
          } else {
            line += "  " + std::string(pad, ' ') + row[c];
          }
        }
        std::cout << line << "  " << row.back() << "\n";
      };
      print_row(head);
      for (const auto& row : cells) {
        if (row[2].empty()) {
          std::cout << row[0] << std::string(width[0] - row[0].size(), ' ') << "  " << row[1]
                    << "\n";
        } else {
          print_row(row);
        }
      }
      std::cout << "\n"
                << rows.size() - static_cast<std::size_t>(failed) << " of " << rows.size()
                << " compressors ran";
      if (failed > 0) std::cout << "; " << failed << " failed";
      std::cout << "\n";
    }
  }
  if (failed > 0) {
    std::cerr << "gradcomp: survey: " << failed << " of " << rows.size() << " compressors failed\n";
    return kExitError;
  }
  return kExitOk;
}

// ---- presets / simulate ------------------------------------------------------------------------

int cmd_presets(const std::vector<std::string>& argv) {
  Args args;
  if (!parse_args("presets", argv, FlagSpec{}, &args)) return kExitUsage;
  if (args.help) {
    std::cout << usage_of("presets");
    return kExitOk;
  }
  if (args.positional.size() > 1) return usage_error("presets", "too many arguments");
  const auto& catalog = gradcomp::preset_catalog();
  if (args.positional.size() == 1) {
    auto p = gradcomp::parse_preset(args.positional[0]);
    if (!p.ok()) return fail(p.status());
  }
  bool first = true;
  for (const auto& info : catalog) {
    if (!args.positional.empty() && info.name != args.positional[0]) continue;
    if (!first) std::cout << "\n";
    first = false;
    std::cout << info.name << ": " << info.summary << "\n";
    print_options(info.options);
  }
  return kExitOk;
}

// --flag VALUE as a double in [lo, hi]; false (after the usage message) when malformed.
bool parse_double_flag(const std::string& cmd, const Args& args, const std::string& flag, double lo,
                       double hi, double* out) {
  auto it = args.values.find(flag);
  if (it == args.values.end()) return true;
  auto r = gradcomp::parse_double(flag, it->second);
  if (!r.ok() || !(r.value() >= lo && r.value() <= hi)) {
    std::cerr << "gradcomp " << cmd << ": " << flag << " must be a number in [" << lo << ", " << hi
              << "], got '" << it->second << "'\n\n"
              << usage_of(cmd);
    return false;
  }
  *out = r.value();
  return true;
}

bool parse_u32_flag(const std::string& cmd, const Args& args, const std::string& flag,
                    std::uint32_t* out) {
  std::uint64_t v = *out;
  if (!parse_u64_flag(cmd, args, flag, 0xFFFFFFFFu, &v)) return false;
  *out = static_cast<std::uint32_t>(v);
  return true;
}

int cmd_simulate(const std::vector<std::string>& argv) {
  const std::string cmd = "simulate";
  Args args;
  const FlagSpec spec{
      {"--workers", "--objective", "--split", "--skew", "--features", "--outputs", "--hidden",
       "--samples-per-worker", "--samples", "--batch", "--noise", "--steps", "--steps-per-epoch",
       "--lr", "--lr-decay", "--milestones", "--seed", "--json"},
      {"--params", "--quiet"}};
  if (!parse_args(cmd, argv, spec, &args)) return kExitUsage;
  if (args.help) {
    std::cout << usage_of(cmd);
    return kExitOk;
  }
  if (args.positional.empty()) return usage_error(cmd, "missing PRESET");
  if (args.positional.size() > 1)
    return usage_error(cmd, "unexpected argument " + args.positional[1]);
  gradcomp::ref::SimulatorConfig cfg;
  cfg.preset = args.positional[0];
  if (!parse_u32_flag(cmd, args, "--workers", &cfg.workers) ||
      !parse_u32_flag(cmd, args, "--features", &cfg.features) ||
      !parse_u32_flag(cmd, args, "--outputs", &cfg.outputs) ||
      !parse_u32_flag(cmd, args, "--hidden", &cfg.hidden) ||
      !parse_u32_flag(cmd, args, "--samples-per-worker", &cfg.samples_per_worker) ||
      !parse_u32_flag(cmd, args, "--samples", &cfg.samples) ||
      !parse_u32_flag(cmd, args, "--batch", &cfg.batch) ||
      !parse_u32_flag(cmd, args, "--steps", &cfg.steps) ||
      !parse_u32_flag(cmd, args, "--steps-per-epoch", &cfg.steps_per_epoch) ||
      !parse_u64_flag(cmd, args, "--seed", ~std::uint64_t{0}, &cfg.seed) ||
      !parse_double_flag(cmd, args, "--skew", 0.0, 1.0, &cfg.skew) ||
      !parse_double_flag(cmd, args, "--noise", 0.0, 1e300, &cfg.noise) ||
      !parse_double_flag(cmd, args, "--lr", 0.0, 1e300, &cfg.lr) ||
      !parse_double_flag(cmd, args, "--lr-decay", 0.0, 1e300, &cfg.lr_decay)) {
    return kExitUsage;
  }
  if (args.values.count("--objective")) {
    const std::string& o = args.values["--objective"];
    if (o == "ls") {
      cfg.objective = gradcomp::ref::ObjectiveKind::kLeastSquares;
    } else if (o == "logistic") {
      cfg.objective = gradcomp::ref::ObjectiveKind::kLogistic;
    } else if (o == "mlp") {
      cfg.objective = gradcomp::ref::ObjectiveKind::kMlp;
    } else {
      return usage_error(cmd, "--objective must be ls, logistic or mlp, got '" + o + "'");
    }
  }
  if (args.values.count("--split")) {
    const std::string& sp = args.values["--split"];
    if (sp != "iid" && sp != "noniid")
      return usage_error(cmd, "--split must be iid or noniid, got '" + sp + "'");
    cfg.split = sp == "iid" ? gradcomp::ref::DataSplit::kIid : gradcomp::ref::DataSplit::kNonIid;
  }
  if (args.values.count("--milestones")) {
    const std::string& m = args.values["--milestones"];
    std::size_t start = 0;
    while (start <= m.size()) {
      const std::size_t comma = std::min(m.find(',', start), m.size());
      auto v = gradcomp::parse_uint("--milestones", m.substr(start, comma - start));
      if (!v.ok() || v.value() > 0xFFFFFFFFu)
        return usage_error(
            cmd, "--milestones must be step numbers separated by commas, got '" + m + "'");
      cfg.lr_milestones.push_back(static_cast<std::uint32_t>(v.value()));
      start = comma + 1;
    }
  }
  cfg.record_params = args.switches.count("--params") > 0;
  const std::string json_file = args.values.count("--json") ? args.values["--json"] : "";

  auto run = gradcomp::ref::simulate(cfg);
  if (!run.ok()) return fail(run.status());
  const gradcomp::ref::Trajectory& t = run.value();
  if (!json_file.empty()) {
    const std::string json = gradcomp::ref::trajectory_json(cfg, t);
    if (json_file == "-") {
      std::cout << json;
      return kExitOk;
    }
    std::ofstream out(json_file, std::ios::binary);
    out << json;
    out.close();
    if (!out) {
      return fail(make_status(StatusCode::kIoError, "cannot write '", json_file, "'"));
    }
  }
  std::uint64_t up = 0, down = 0;  // worker 0's totals
  for (const auto& st : t.steps) {
    up += st.bytes_up.empty() ? 0 : st.bytes_up[0];
    down += st.bytes_down.empty() ? 0 : st.bytes_down[0];
  }
  std::cout << "gradcomp simulate: " << t.preset << "\n"
            << "  " << cfg.workers << " workers, objective "
            << gradcomp::ref::objective_name(cfg.objective) << ", split "
            << gradcomp::ref::split_name(cfg.split) << ", " << t.final_params.size()
            << " parameters, seed " << cfg.seed << "\n"
            << "  initial loss " << sci(t.initial_loss) << "\n";
  if (!args.switches.count("--quiet") && !t.steps.empty()) {
    std::cout << "\n  step  lr          loss        checksum          up B (w0)  down B (w0)\n";
    // At most about 20 rows: every k-th step and the last.
    const std::size_t every = (t.steps.size() + 19) / 20;
    for (std::size_t i = 0; i < t.steps.size(); ++i) {
      if (i % every != 0 && i + 1 != t.steps.size()) continue;
      const auto& st = t.steps[i];
      char line[160];
      std::snprintf(line, sizeof line, "  %-5u %-11s %-11s %016llx  %-10llu %llu\n", st.step,
                    sci(st.lr).c_str(), sci(st.loss).c_str(),
                    static_cast<unsigned long long>(st.checksum),
                    static_cast<unsigned long long>(st.bytes_up.empty() ? 0 : st.bytes_up[0]),
                    static_cast<unsigned long long>(st.bytes_down.empty() ? 0 : st.bytes_down[0]));
      std::cout << line;
    }
  }
  char sum[64];
  std::snprintf(sum, sizeof sum, "%016llx",
                static_cast<unsigned long long>(t.steps.empty() ? 0 : t.steps.back().checksum));
  std::cout << "\n  final loss "
            << (t.steps.empty() ? sci(t.initial_loss) : sci(t.steps.back().loss)) << ", checksum "
            << (t.steps.empty() ? "-" : sum) << "\n"
            << "  worker 0 sent " << up << " B and received " << down << " B in " << t.steps.size()
            << " steps\n";
  if (!json_file.empty()) std::cout << "  trajectory written to " << json_file << "\n";
  return kExitOk;
}

int cmd_help(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    std::cout << kMainUsage;
    return kExitOk;
  }
  if (argv.size() == 1 && (argv[0] == "--help" || argv[0] == "-h")) {
    std::cout << usage_of("help");
    return kExitOk;
  }
  if (argv.size() == 1 && is_command(argv[0])) {
    std::cout << usage_of(argv[0]);
    return kExitOk;
  }
  std::cerr << "gradcomp help: unknown command '" << argv[0] << "'\n\n" << kMainUsage;
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kMainUsage;
    return kExitUsage;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  if (cmd == "--help" || cmd == "-h") {
    std::cout << kMainUsage;
    return kExitOk;
  }
  if (cmd == "help") return cmd_help(rest);
  if (cmd == "list") return cmd_list(rest);
  if (cmd == "compress") return cmd_compress(rest);
  if (cmd == "decompress") return cmd_decompress(rest);
  if (cmd == "roundtrip") return cmd_roundtrip(rest);
  if (cmd == "survey") return cmd_survey(rest);
  if (cmd == "presets") return cmd_presets(rest);
  if (cmd == "simulate") return cmd_simulate(rest);
  std::cerr << "gradcomp: unknown command '" << cmd << "'\n\n" << kMainUsage;
  return kExitUsage;
}
