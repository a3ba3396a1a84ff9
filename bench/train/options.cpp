#include "options.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

namespace gradcomp::train {
namespace {

Status parse_u64(const std::string& opt, const std::string& v, std::uint64_t lo, std::uint64_t hi,
                 std::uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  GRADCOMP_CHECK_ARG(!v.empty() && v[0] != '-' && *end == '\0' && errno == 0 && x >= lo && x <= hi,
                     opt, ": '", v, "' is not an integer in [", lo, ", ", hi, "]");
  *out = x;
  return Status::success();
}

Status parse_u32(const std::string& opt, const std::string& v, std::uint32_t lo,
                 std::uint32_t* out) {
  std::uint64_t x = 0;
  GRADCOMP_TRY(parse_u64(opt, v, lo, 0xFFFFFFFFull, &x));
  *out = static_cast<std::uint32_t>(x);
  return Status::success();
}

Status parse_double(const std::string& opt, const std::string& v, double* out) {
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  GRADCOMP_CHECK_ARG(!v.empty() && *end == '\0' && errno == 0 && std::isfinite(x), opt, ": '", v,
                     "' is not a number");
  *out = x;
  return Status::success();
}

}  // namespace

std::string train_usage() {
  return R"(usage: mpiexec -n P gradcomp-train [options]

Data-parallel training of a CIFAR-style ResNet on Fashion-MNIST, one MPI rank per worker, with the
gradients going through the gradcomp distributed optimizer of any preset. See docs/train.md.

  --preset CASE          optimizer preset case string (default sgdm; 'gradcomp presets' lists them)
  --model NAME           resnet8 (default) or resnet20
  --epochs E             epochs in total, counting resumed ones (default 3)
  --batch B              minibatch per worker (default 64)
  --lr LR                base learning rate (default 0.02)
  --lr-schedule KIND     constant (default), steps or cosine
  --lr-milestones M,..   steps: epochs after which the lr is multiplied by --lr-gamma
  --lr-gamma G           steps: decay factor (default 0.1)
  --lr-min LR            cosine: final lr (default 0)
  --warmup-epochs W      linear warm-up over the first W epochs (fractions allowed; default 0)
  --weight-decay WD      the preset's decoupled wd when it has a 'wd' option, otherwise L2 added to
                         the gradient (default: the preset's own value)
  --split S              iid (default) or noniid (label-skewed)
  --train-subset N       use the first N training images (default all 60000)
  --test-subset N        evaluate on the first N test images (default all 10000)
  --seed S               model init, data split and order, compressor RNG (default 0)
  --checkpoint FILE      write model + optimizer state after every epoch
  --resume FILE          continue from a checkpoint (same configuration required)
  --json FILE            per-epoch JSON (schema in docs/train.md)
  --threads T            torch threads per rank (default: cores / ranks on this node, >= 1)
  --data-dir DIR         Fashion-MNIST IDX files (default $GRADCOMP_FMNIST_DIR or
                         /usr/share/datasets/fashion-mnist)
  --compute IMPL         kernel implementation of the optimizer: any (default), ref:any, kk:serial
  --algorithm A          collective algorithm (default auto; see docs/collectives.md)
  --reduction R          fast (default) or deterministic (rank-ordered sums)
  --progress P           auto (bar on a terminal, else one line per epoch), bar, lines, none
  -h, --help             this text
)";
}

Result<TrainOptions> parse_train_args(const std::vector<std::string>& args) {
  TrainOptions o;
  bool have_milestones = false;
  using Handler = std::function<Status(const std::string&, const std::string&)>;
  const std::map<std::string, Handler> handlers = {
      {"--preset",
       [&](auto&, auto& v) {
         o.preset = v;
         return Status::success();
       }},
      {"--model",
       [&](auto& k, auto& v) {
         GRADCOMP_CHECK_ARG(v == "resnet8" || v == "resnet20", k, ": '", v,
                            "' is not a model (use resnet8 or resnet20)");
         o.model = v;
         return Status::success();
       }},
      {"--epochs", [&](auto& k, auto& v) { return parse_u32(k, v, 1, &o.epochs); }},
      {"--batch", [&](auto& k, auto& v) { return parse_u32(k, v, 1, &o.batch); }},
      {"--lr", [&](auto& k, auto& v) { return parse_double(k, v, &o.lr.base); }},
      {"--lr-schedule",
       [&](auto&, auto& v) {
         auto kind = parse_lr_kind(v);
         if (!kind.ok()) return kind.status();
         o.lr.kind = *kind;
         return Status::success();
       }},
      {"--lr-milestones",
       [&](auto&, auto& v) {
         auto m = parse_milestones(v);
         if (!m.ok()) return m.status();
         o.lr.milestones = *m;
         have_milestones = true;
         return Status::success();
       }},
      {"--lr-gamma", [&](auto& k, auto& v) { return parse_double(k, v, &o.lr.gamma); }},
      {"--lr-min", [&](auto& k, auto& v) { return parse_double(k, v, &o.lr.min_lr); }},
      {"--warmup-epochs",
       [&](auto& k, auto& v) { return parse_double(k, v, &o.lr.warmup_epochs); }},
      {"--weight-decay",
       [&](auto& k, auto& v) {
         GRADCOMP_TRY(parse_double(k, v, &o.weight_decay));
         GRADCOMP_CHECK_ARG(o.weight_decay >= 0, k, " must be >= 0, got ", v);
         return Status::success();
       }},
      {"--split",
       [&](auto&, auto& v) {
         auto s = parse_split(v);
         if (!s.ok()) return s.status();
         o.split = *s;
         return Status::success();
       }},
      {"--train-subset", [&](auto& k, auto& v) { return parse_u32(k, v, 1, &o.train_subset); }},
      {"--test-subset", [&](auto& k, auto& v) { return parse_u32(k, v, 1, &o.test_subset); }},
      {"--seed", [&](auto& k, auto& v) { return parse_u64(k, v, 0, ~0ull, &o.seed); }},
      {"--checkpoint",
       [&](auto&, auto& v) {
         o.checkpoint = v;
         return Status::success();
       }},
      {"--resume",
       [&](auto&, auto& v) {
         o.resume = v;
         return Status::success();
       }},
      {"--json",
       [&](auto&, auto& v) {
         o.json = v;
         return Status::success();
       }},
      {"--threads", [&](auto& k, auto& v) { return parse_u32(k, v, 1, &o.threads); }},
      {"--data-dir",
       [&](auto&, auto& v) {
         o.data_dir = v;
         return Status::success();
       }},
      {"--compute",
       [&](auto&, auto& v) {
         o.compute = v;
         return Status::success();
       }},
      {"--algorithm",
       [&](auto&, auto& v) {
         o.algorithm = v;
         return Status::success();
       }},
      {"--reduction",
       [&](auto& k, auto& v) {
         GRADCOMP_CHECK_ARG(v == "fast" || v == "deterministic", k, ": '", v,
                            "' is not a reduction mode (use fast or deterministic)");
         o.deterministic = v == "deterministic";
         return Status::success();
       }},
      {"--progress",
       [&](auto& k, auto& v) {
         GRADCOMP_CHECK_ARG(v == "auto" || v == "bar" || v == "lines" || v == "none", k, ": '", v,
                            "' is not a progress mode (use auto, bar, lines or none)");
         o.progress = v;
         return Status::success();
       }},
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string key = args[i], value;
    if (key == "-h" || key == "--help") {
      o.help = true;
      continue;
    }
    const auto eq = key.find('=');
    const bool inline_value = key.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    const auto h = handlers.find(key);
    GRADCOMP_CHECK_ARG(h != handlers.end(), "unknown option '", key, "' (see --help)");
    if (!inline_value) {
      GRADCOMP_CHECK_ARG(i + 1 < args.size(), key, " needs a value");
      value = args[++i];
    }
    GRADCOMP_TRY(h->second(key, value));
  }
  GRADCOMP_CHECK_ARG(!have_milestones || o.lr.kind == LrSchedule::Kind::kSteps,
                     "--lr-milestones needs --lr-schedule steps");
  GRADCOMP_TRY(o.lr.validate(o.epochs));
  return o;
}

namespace {
// Whether the case string sets `key` itself (as "key=" right after ':' or ',').
bool sets_option(const std::string& text, const std::string& key) {
  const std::string k = key + "=";
  for (std::size_t pos = text.find(k); pos != std::string::npos; pos = text.find(k, pos + 1)) {
    if (pos > 0 && (text[pos - 1] == ':' || text[pos - 1] == ',')) return true;
  }
  return false;
}
std::string with_option(const std::string& text, const std::string& key, const std::string& v) {
  return text + (text.find(':') == std::string::npos ? ":" : ",") + key + "=" + v;
}
}  // namespace

Result<RunPreset> resolve_run_preset(const std::string& text, std::uint64_t seed,
                                     double weight_decay) {
  auto first = parse_preset(text);
  if (!first.ok()) return first.status();
  RunPreset rp;
  rp.text = text;
  if (!first->get("seed").empty() && !sets_option(text, "seed")) {
    rp.text = with_option(rp.text, "seed", std::to_string(seed));
  }
  if (weight_decay >= 0) {
    const std::string own = first->get("wd");
    if (own.empty()) {
      rp.coupled_wd = weight_decay;
    } else if (sets_option(text, "wd")) {
      GRADCOMP_CHECK_ARG(std::strtod(own.c_str(), nullptr) == weight_decay, "--weight-decay ",
                         weight_decay, " disagrees with wd=", own, " in --preset ", text);
    } else {
      char buf[32];  // shortest round-trip text
      const auto r = std::to_chars(buf, buf + sizeof buf, weight_decay);
      rp.text = with_option(rp.text, "wd", std::string(buf, r.ptr));
    }
  }
  auto desc = parse_preset(rp.text);
  if (!desc.ok()) return desc.status();
  rp.desc = *desc;
  return rp;
}

}  // namespace gradcomp::train
