// Preset case strings and their resolution into PipelineConfig (algorithms.md §3.3).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "gradcomp/preset.hpp"

namespace gradcomp {
namespace {

using P = PresetKind;

enum class ValueType { kDouble, kUint, kBool, kEnum, kDoubleList, kCompressor };

struct PresetOption {
  std::string key;
  std::string default_value;
  ValueType type;
  std::string help;
  std::vector<std::string> choices = {};  // kEnum, kCompressor (empty: any compressor)
};

struct PresetDef {
  PresetKind kind;
  const char* name;
  const char* summary;
  std::vector<PresetOption> options;
  // Default options of each compressor slot ("up", "down", "c1", "c2"), as a compressor case
  // string without n; the slot's own option (e.g. "up") names the compressor.
  std::map<std::string, std::string> slot_defaults;
};

PresetOption seed_opt() {
  return {"seed", "0", ValueType::kUint, "seed of every compressor's counter RNG"};
}
PresetOption momentum_opt(const char* def, const char* help) {
  return {"momentum", def, ValueType::kDouble, help};
}
PresetOption wd_opt() {
  return {"wd", "0", ValueType::kDouble, "decoupled weight decay lambda (S10)"};
}
PresetOption slot_opt(const char* slot, const char* def, std::vector<std::string> choices,
                      const char* help) {
  return {slot, def, ValueType::kCompressor, help, std::move(choices)};
}

const std::vector<PresetDef>& preset_table() {
  static const std::vector<PresetDef> table = {
      {P::kSgdm,
       "sgdm",
       "dense synchronous SGD with momentum (A1, the baseline)",
       {seed_opt(),
        momentum_opt("0.9", "heavy-ball momentum mu, applied after the allreduce"),
        {"nesterov", "0", ValueType::kBool, "Nesterov momentum instead of heavy ball"},
        wd_opt()},
       {}},
      {P::kEfSgd,
       "ef-sgd",
       "EF-SGD / EF-SignSGD: worker error feedback around any compressor (A2)",
       {seed_opt(),
        slot_opt("up", "blocksign", {}, "compressor (up.<option> sets its options)"),
        {"lr_placement",
         "inside",
         ValueType::kEnum,
         "memory in lr-scaled units, or lr-free with rescaling (equal for homogeneous C, E1)",
         {"inside", "outside_rescale"}},
        momentum_opt("0", "local heavy-ball momentum before compression [P]"),
        wd_opt()},
       {{"up", "blocksign"}}},
      {P::kSignumMv,
       "signum-mv",
       "Signum: EMA momentum, 1-bit signs, majority vote (A3)",
       {seed_opt(),
        {"beta", "0.9", ValueType::kDouble, "EMA coefficient of the local momentum"},
        {"tie", "zero", ValueType::kEnum, "vote of an even split", {"zero", "plus"}},
        wd_opt()},
       {}},
      {P::kSignSgdMv,
       "signsgd-mv",
       "signSGD with majority vote: Signum with beta = 0 (A3, E3)",
       {seed_opt(),
        {"tie", "zero", ValueType::kEnum, "vote of an even split", {"zero", "plus"}},
        wd_opt()},
       {}},
      {P::kDistEfSgdm,
       "dist-ef-sgdm",
       "dist-EF-blockSGDM: Nesterov, two-way blockwise scaled sign with server EF (A4)",
       {seed_opt(),
        momentum_opt("0.9", "Nesterov momentum before compression"),
        {"block", "0", ValueType::kUint, "block size; 0 = one block per tensor"},
        {"scale", "l1", ValueType::kEnum, "block scale", {"l1", "l2", "none"}},
        {"server",
         "ps",
         ValueType::kEnum,
         "one parameter server, or P chunk owners (blocks cut at chunk edges)",
         {"ps", "chunked"}},
        {"lr_placement",
         "outside_rescale",
         ValueType::kEnum,
         "memory units (E1)",
         {"outside_rescale", "inside"}},
        wd_opt()},
       {}},
      {P::kDgc,
       "dgc",
       "Deep Gradient Compression: momentum correction, masking, clipping, warm-up (A5)",
       {seed_opt(),
        {"density", "0.001", ValueType::kDouble, "final density after warm-up"},
        momentum_opt("0.9", "local momentum (momentum correction)"),
        {"nesterov", "0", ValueType::kBool, "the DGC code's Nesterov variant"},
        {"clip", "0", ValueType::kDouble, "local gradient clipping threshold (0 = off)"},
        {"masking", "1", ValueType::kBool, "momentum factor masking"},
        {"warmup", "0.25/0.0625/0.015625/0.004/0.001", ValueType::kDoubleList,
         "density per epoch during warm-up ('none' = no warm-up)"},
        {"selection",
         "code",
         ValueType::kEnum,
         "sampled threshold or exact top-k",
         {"code", "exact"}},
        {"sample_ratio", "0.01", ValueType::kDouble, "fraction sampled for the threshold"},
        wd_opt()},
       {}},
      {P::kQsparseLocal,
       "qsparse-local",
       "Qsparse-local-SGD: local SGD, compressed drift with memory every H steps (A6)",
       {seed_opt(),
        {"period", "4", ValueType::kUint, "H: steps between synchronisations"},
        slot_opt("up", "qsgd_topk", {}, "compressor of the model drift"),
        {"ef", "1", ValueType::kBool, "error feedback (memory) on the drift"},
        {"async", "0", ValueType::kBool,
         "asynchronous: worker r syncs at steps t with (t + 1 + r) % period == 0 [P]"}},
       {{"up", "qsgd_topk:density=0.01,levels=4,scaled=1"}}},
      {P::kPqasgd,
       "pqasgd",
       "PQASGD: local SGD, unbiased quantized model deltas averaged every p steps (A7)",
       {seed_opt(),
        {"period", "4", ValueType::kUint, "p: steps between averagings"},
        slot_opt("up", "qsgd", {}, "unbiased quantizer [R]"),
        {"ef", "0", ValueType::kBool, "error feedback on the delta [R: off]"}},
       {{"up", "qsgd:levels=1,norm=max"}}},
      {P::kSparseParamAvg,
       "sparse-param-avg",
       "sparse parameter averaging: SGD step, then average a shared random block (A7)",
       {seed_opt(), slot_opt("c1", "rbgs", {"rbgs", "grbs"}, "shared block sparsifier")},
       {{"c1", "rbgs:density=0.03125"}}},
      {P::kCser,
       "cser",
       "CSER: local SGD, partial averaging with C1 every step and C2 every H-th (A8)",
       {seed_opt(),
        {"period", "8", ValueType::kUint, "H"},
        slot_opt("c1", "grbs", {"grbs", "rbgs"}, "block of every step"),
        slot_opt("c2", "grbs", {"grbs", "rbgs"}, "block of every H-th step (error reset)"),
        {"form",
         "code",
         ValueType::kEnum,
         "authors' code form or the two-compressor form",
         {"code", "paper2c"}},
        wd_opt()},
       {{"c1", "grbs:rho0=0.03125"}, {"c2", "grbs:rho0=0.25"}}},
      {P::kCserPl,
       "cser-pl",
       "CSER-PL: local SGD, partial averaging with C2 every H-th step only (A8)",
       {seed_opt(),
        {"period", "4", ValueType::kUint, "H"},
        slot_opt("c2", "grbs", {"grbs", "rbgs"}, "block of every H-th step"),
        wd_opt()},
       {{"c2", "grbs:rho0=0.125"}}},
      {P::kMCser,
       "m-cser",
       "M-CSER: CSER with local Nesterov momentum, as in the authors' code (A8)",
       {seed_opt(),
        momentum_opt("0.9", "local NAG momentum (never synchronised)"),
        {"period", "8", ValueType::kUint, "H"},
        slot_opt("c1", "grbs", {"grbs", "rbgs"}, "block of every step"),
        slot_opt("c2", "grbs", {"grbs", "rbgs"}, "block of every H-th step (error reset)"),
        {"form",
         "code",
         ValueType::kEnum,
         "authors' code form or the two-compressor form",
         {"code", "paper2c"}},
        wd_opt()},
       {{"c1", "grbs:rho0=0.03125"}, {"c2", "grbs:rho0=0.25"}}},
      {P::kGmc,
       "gmc",
       "GMC: global momentum from the last aggregate, memory in lr-free units (A9 [P])",
       {seed_opt(), momentum_opt("0.9", "global momentum beta"),
        slot_opt("up", "topk", {}, "compressor")},
       {{"up", "topk:density=0.01"}}},
      {P::kGmcPlus,
       "gmc+",
       "GMC+: GMC with detached error feedback (A9 [P], option A) or momentum after (B)",
       {seed_opt(),
        momentum_opt("0.9", "global momentum beta"),
        slot_opt("up", "rbgs", {}, "compressor"),
        {"option",
         "a",
         ValueType::kEnum,
         "a: gradient at w - detach*lr*e; b: HB after",
         {"a", "b"}},
        {"detach", "0.3", ValueType::kDouble, "lambda of option a (0 = GMC) [P]"}},
       {{"up", "rbgs:density=0.015625"}}},
      {P::kDefA,
       "def-a",
       "DEF/DEF-A (authors' code): local heavy ball, detached models w - coeff*e (A9b)",
       {seed_opt(),
        momentum_opt("0.9", "local heavy-ball momentum"),
        {"coeff", "0.3", ValueType::kDouble, "local model = w - coeff * memory"},
        {"period", "1", ValueType::kUint, "steps per communication round"},
        slot_opt("up", "rbgs", {}, "compressor"),
        wd_opt()},
       {{"up", "rbgs:density=0.015625"}}},
      {P::kPowerSgd,
       "powersgd",
       "PowerSGD: rank-r power iteration with EF, Nesterov momentum after the reduce (A10)",
       {seed_opt(),
        {"rank", "2", ValueType::kUint, "approximation rank r"},
        momentum_opt("0.9", "momentum after aggregation (Nesterov-style update)"),
        {"warm_start", "1", ValueType::kBool, "reuse Q between steps"},
        wd_opt()},
       {}},
  };
  return table;
}

const PresetDef* find_def(std::string_view name) {
  for (const auto& d : preset_table())
    if (name == d.name) return &d;
  return nullptr;
}
const PresetDef& def_of(PresetKind kind) {
  for (const auto& d : preset_table())
    if (d.kind == kind) return d;
  return preset_table().front();
}

Status check_value(const PresetOption& o, const std::string& v) {
  switch (o.type) {
    case ValueType::kDouble: return parse_double(o.key, v).status();
    case ValueType::kUint: return parse_uint(o.key, v).status();
    case ValueType::kBool:
      GRADCOMP_CHECK_ARG(v == "0" || v == "1", "option '", o.key, "': '", v, "' must be 0 or 1");
      return Status::success();
    case ValueType::kEnum:
      GRADCOMP_CHECK_ARG(std::find(o.choices.begin(), o.choices.end(), v) != o.choices.end(),
                         "option '", o.key, "': '", v, "' is not one of the choices");
      return Status::success();
    case ValueType::kDoubleList: {
      if (v == "none") return Status::success();
      std::size_t start = 0;
      while (start <= v.size()) {
        const std::size_t slash = std::min(v.find('/', start), v.size());
        GRADCOMP_TRY(parse_double(o.key, v.substr(start, slash - start)).status());
        start = slash + 1;
      }
      return Status::success();
    }
    case ValueType::kCompressor: {
      auto kind = compressor_kind_from_name(v);
      if (!kind.ok())
        return make_status(StatusCode::kInvalidArgument, "option '", o.key,
                           "': ", kind.status().message());
      GRADCOMP_CHECK_ARG(
          o.choices.empty() || std::find(o.choices.begin(), o.choices.end(), v) != o.choices.end(),
          "option '", o.key, "': compressor '", v, "' is not allowed here");
      return Status::success();
    }
  }
  return Status::success();
}

// The canonical compressor of a slot: the slot's compressor with the preset's defaults for it
// (when it is the preset's default compressor) and the user's "slot.key" overrides, no n.
Result<CompressorDesc> slot_compressor(const PresetDef& def, const std::string& slot,
                                       const std::string& name,
                                       const std::vector<std::pair<std::string, std::string>>& sub,
                                       std::uint64_t seed) {
  CaseString cs;
  cs.name = name;
  auto it = def.slot_defaults.find(slot);
  if (it != def.slot_defaults.end()) {
    auto base = parse_case_string(it->second);
    if (base.ok() && base->name == name) cs.options = base->options;
  }
  for (const auto& [k, v] : sub) {
    GRADCOMP_CHECK_ARG(k != "n" && k != "seed" && k != "shapes", "option '", slot, ".", k,
                       "': set by the preset (n and shapes from the model, seed from 'seed')");
    bool replaced = false;
    for (auto& kv : cs.options) {
      if (kv.first == k) {
        kv.second = v;
        replaced = true;
      }
    }
    if (!replaced) cs.options.emplace_back(k, v);
  }
  cs.options.emplace_back("seed", std::to_string(seed));
  auto desc = parse_compressor(cs.to_string());
  if (!desc.ok()) {
    return make_status(StatusCode::kInvalidArgument, "compressor slot '", slot,
                       "': ", desc.status().message());
  }
  return desc;
}

}  // namespace

const char* preset_name(PresetKind kind) { return def_of(kind).name; }

std::string PresetDesc::get(std::string_view key) const {
  for (const auto& kv : options)
    if (kv.first == key) return kv.second;
  return "";
}

std::string PresetDesc::to_string() const {
  CaseString cs;
  cs.name = preset_name(kind);
  cs.options = options;
  return cs.to_string();
}

Result<PresetDesc> parse_preset(std::string_view text) {
  auto cs = parse_case_string(text);
  if (!cs.ok()) return cs.status();
  const PresetDef* def = find_def(cs->name);
  if (def == nullptr) {
    std::string known;
    for (const auto& d : preset_table()) known += (known.empty() ? "" : ", ") + std::string(d.name);
    return make_status(StatusCode::kInvalidArgument, "unknown preset '", cs->name,
                       "'; known: ", known);
  }
  // Preset-level values (defaults filled) and per-slot sub-options.
  std::map<std::string, std::string> values;
  for (const auto& o : def->options) values[o.key] = o.default_value;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> sub;
  for (const auto& [key, value] : cs->options) {
    const std::size_t dot = key.find('.');
    if (dot != std::string::npos) {
      const std::string slot = key.substr(0, dot);
      const bool is_slot = std::any_of(def->options.begin(), def->options.end(), [&](auto& o) {
        return o.key == slot && o.type == ValueType::kCompressor;
      });
      if (!is_slot) {
        return make_status(StatusCode::kInvalidArgument, def->name, ": unknown option '", key,
                           "' (", slot, " is not a compressor slot of this preset)");
      }
      sub[slot].emplace_back(key.substr(dot + 1), value);
      continue;
    }
    auto opt = std::find_if(def->options.begin(), def->options.end(),
                            [&](const PresetOption& o) { return o.key == key; });
    if (opt == def->options.end()) {
      std::string valid;
      for (const auto& o : def->options) valid += (valid.empty() ? "" : ", ") + o.key;
      return make_status(StatusCode::kInvalidArgument, def->name, ": unknown option '", key,
                         "' (valid: ", valid, ")");
    }
    Status s = check_value(*opt, value);
    if (!s.ok()) return make_status(s.code(), def->name, ": ", s.message());
    values[key] = value;
  }
  PresetDesc desc;
  desc.kind = def->kind;
  const std::uint64_t seed = parse_uint("seed", values["seed"]).value();
  for (const auto& o : def->options) {
    const std::string& v = values[o.key];
    if (o.type == ValueType::kDouble) {
      desc.options.emplace_back(o.key, format_double(parse_double(o.key, v).value()));
    } else if (o.type == ValueType::kUint) {
      desc.options.emplace_back(o.key, std::to_string(parse_uint(o.key, v).value()));
    } else if (o.type == ValueType::kDoubleList && v != "none") {
      std::string canon;
      std::size_t start = 0;
      while (start <= v.size()) {
        const std::size_t slash = std::min(v.find('/', start), v.size());
        canon += (canon.empty() ? "" : "/") +
                 format_double(parse_double(o.key, v.substr(start, slash - start)).value());
        start = slash + 1;
      }
      desc.options.emplace_back(o.key, canon);
    } else {
      desc.options.emplace_back(o.key, v);
    }
    if (o.type != ValueType::kCompressor) continue;
    // Canonical sub-options: those that differ from the compressor's own defaults.
    auto c = slot_compressor(*def, o.key, v, sub[o.key], seed);
    if (!c.ok()) return make_status(c.status().code(), def->name, ": ", c.status().message());
    auto plain = parse_compressor(v + ":seed=" + std::to_string(seed));
    auto mine = parse_case_string(c->to_string());
    auto theirs = parse_case_string(plain->to_string());
    for (const auto& kv : mine->options) {
      if (kv.first == "n" || kv.first == "seed") continue;
      if (std::find(theirs->options.begin(), theirs->options.end(), kv) == theirs->options.end())
        desc.options.emplace_back(o.key + "." + kv.first, kv.second);
    }
  }
  for (const auto& [slot, kvs] : sub) {
    if (!kvs.empty() && desc.get(slot).empty()) {
      return make_status(StatusCode::kInvalidArgument, def->name, ": no compressor slot '", slot,
                         "'");
    }
  }
  // Range checks of preset-level numbers.
  auto num = [&](const char* key) { return parse_double(key, desc.get(key)).value(); };
  for (const char* key : {"momentum", "beta"}) {
    if (!desc.get(key).empty()) {
      GRADCOMP_CHECK_ARG(num(key) >= 0.0 && num(key) < 1.0, def->name, ": ", key,
                         " must be in [0, 1), got ", desc.get(key));
    }
  }
  for (const char* key : {"wd", "clip", "detach", "coeff"}) {
    if (!desc.get(key).empty()) {
      GRADCOMP_CHECK_ARG(num(key) >= 0.0, def->name, ": ", key, " must be >= 0, got ",
                         desc.get(key));
    }
  }
  for (const char* key : {"period", "rank"}) {
    if (!desc.get(key).empty()) {
      GRADCOMP_CHECK_ARG(num(key) >= 1.0, def->name, ": ", key, " must be >= 1, got ",
                         desc.get(key));
    }
  }
  if (!desc.get("density").empty()) {
    GRADCOMP_CHECK_ARG(num("density") >= 0.0 && num("density") <= 1.0, def->name,
                       ": density must be in [0, 1], got ", desc.get("density"));
  }
  if (!desc.get("warmup").empty() && desc.get("warmup") != "none") {
    const std::string w = desc.get("warmup");
    std::size_t start = 0;
    while (start <= w.size()) {
      const std::size_t slash = std::min(w.find('/', start), w.size());
      const double d = parse_double("warmup", w.substr(start, slash - start)).value();
      GRADCOMP_CHECK_ARG(d > 0.0 && d <= 1.0, def->name,
                         ": warm-up densities must be in (0, 1], got ", d);
      start = slash + 1;
    }
  }
  return desc;
}

Result<PipelineConfig> resolve_preset(const PresetDesc& preset, std::uint64_t n,
                                      const std::vector<std::vector<std::uint64_t>>& shapes) {
  // Re-parse so that a hand-built PresetDesc is validated too.
  auto checked = parse_preset(preset.to_string());
  if (!checked.ok()) return checked.status();
  const PresetDesc& p = checked.value();
  const PresetDef& def = def_of(p.kind);
  const std::uint64_t seed = parse_uint("seed", p.get("seed")).value();
  auto d = [&](const char* key) { return parse_double(key, p.get(key)).value(); };
  auto u = [&](const char* key) {
    return static_cast<std::uint32_t>(parse_uint(key, p.get(key)).value());
  };
  auto b = [&](const char* key) { return p.get(key) == "1"; };
  auto compressor = [&](const std::string& text) -> Result<CompressorDesc> {
    auto c = parse_compressor(text);
    if (!c.ok()) return c.status();
    CompressorDesc desc = c.value();
    desc.n = n;
    desc.shapes = shapes;
    desc.seed = seed;
    GRADCOMP_TRY(validate(desc));
    return desc;
  };
  // A slot's compressor, with the preset's sub-options.
  auto slot = [&](const std::string& name) -> Result<CompressorDesc> {
    std::vector<std::pair<std::string, std::string>> sub;
    const std::string prefix = name + ".";
    for (const auto& kv : p.options)
      if (kv.first.rfind(prefix, 0) == 0)
        sub.emplace_back(kv.first.substr(prefix.size()), kv.second);
    auto c = slot_compressor(def, name, p.get(name), sub, seed);
    if (!c.ok()) return c.status();
    return compressor(c->to_string());
  };
  auto identity = [&]() { return compressor("identity").value(); };
  auto weight_decay = [&](PipelineConfig& c, WeightDecayForm form) {
    c.weight_decay = d("wd");
    c.weight_decay_form = c.weight_decay > 0 ? form : WeightDecayForm::kNone;
  };

  PipelineConfig c;
  c.preset = p.kind;
  c.up = identity();
  c.down = identity();
  c.c1 = identity();
  c.c1.n = 0;
  c.c2 = c.c1;
  switch (p.kind) {
    case P::kSgdm:
      c.momentum = d("momentum");
      c.momentum_form = b("nesterov") ? MomentumForm::kNesterov : MomentumForm::kHeavyBall;
      c.momentum_placement = MomentumPlacement::kPost;
      weight_decay(c, b("nesterov") ? WeightDecayForm::kNesterov : WeightDecayForm::kHeavyBall);
      break;
    case P::kEfSgd: {
      auto up = slot("up");
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.error_feedback = true;
      c.lr_placement =
          p.get("lr_placement") == "inside" ? LrPlacement::kInside : LrPlacement::kOutsideRescale;
      c.momentum = d("momentum");
      c.momentum_form = c.momentum > 0 ? MomentumForm::kHeavyBall : MomentumForm::kNone;
      weight_decay(c, WeightDecayForm::kPlain);
      break;
    }
    case P::kSignumMv:
    case P::kSignSgdMv: {
      auto up = compressor("sign");
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.momentum = p.kind == P::kSignumMv ? d("beta") : 0.0;
      c.momentum_form = c.momentum > 0 ? MomentumForm::kEma : MomentumForm::kNone;
      c.aggregation = Aggregation::kMajority;
      c.majority_tie = p.get("tie") == "plus" ? MajorityTie::kPlus : MajorityTie::kZero;
      weight_decay(c, WeightDecayForm::kPlain);
      break;
    }
    case P::kDistEfSgdm: {
      const std::string block = "blocksign:block=" + p.get("block") + ",scale=" + p.get("scale");
      auto up = compressor(block);
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.down = up.value();
      c.error_feedback = true;
      c.two_way = true;
      c.server = p.get("server") == "chunked" ? ServerTopology::kChunked
                                              : ServerTopology::kParameterServer;
      c.momentum = d("momentum");
      c.momentum_form = MomentumForm::kNesterov;
      c.lr_placement =
          p.get("lr_placement") == "inside" ? LrPlacement::kInside : LrPlacement::kOutsideRescale;
      weight_decay(c, WeightDecayForm::kNesterov);
      break;
    }
    case P::kDgc: {
      auto up = compressor("dgc:density=" + p.get("density") + ",selection=" + p.get("selection") +
                           ",sample_ratio=" + p.get("sample_ratio"));
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.error_feedback = true;
      c.momentum = d("momentum");
      c.momentum_form = b("nesterov") ? MomentumForm::kNesterov : MomentumForm::kHeavyBall;
      c.momentum_masking = b("masking");
      c.clip = d("clip");
      if (p.get("warmup") != "none") {
        const std::string w = p.get("warmup");
        std::size_t start = 0;
        while (start <= w.size()) {
          const std::size_t slash = std::min(w.find('/', start), w.size());
          c.warmup.push_back(parse_double("warmup", w.substr(start, slash - start)).value());
          start = slash + 1;
        }
      }
      weight_decay(c, b("nesterov") ? WeightDecayForm::kNesterov : WeightDecayForm::kHeavyBall);
      break;
    }
    case P::kQsparseLocal:
    case P::kPqasgd: {
      auto up = slot("up");
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.family = Family::kLocalSteps;
      c.lr_placement = LrPlacement::kInside;  // the drift is already lr-scaled
      c.error_feedback = b("ef");
      c.period = u("period");
      c.async = p.kind == P::kQsparseLocal && b("async");
      break;
    }
    case P::kSparseParamAvg: {
      auto c1 = slot("c1");
      if (!c1.ok()) return c1.status();
      c.family = Family::kPartialAvg;
      c.c1 = c1.value();
      break;
    }
    case P::kCser:
    case P::kCserPl:
    case P::kMCser: {
      c.family = Family::kPartialAvg;
      c.period = u("period");
      if (p.kind != P::kCserPl) {
        auto c1 = slot("c1");
        if (!c1.ok()) return c1.status();
        c.c1 = c1.value();
        c.cser_form = p.get("form") == "paper2c" ? CserForm::kPaper2c : CserForm::kCode;
      }
      auto c2 = slot("c2");
      if (!c2.ok()) return c2.status();
      c.c2 = c2.value();
      if (p.kind == P::kMCser) {
        c.momentum = d("momentum");
        c.momentum_form = MomentumForm::kNesterov;
      }
      // Weight decay enters the local NAG update (m <- mu m + g + lambda x).
      c.weight_decay = d("wd");
      c.weight_decay_form = c.weight_decay > 0 ? WeightDecayForm::kPlain : WeightDecayForm::kNone;
      break;
    }
    case P::kGmc:
    case P::kGmcPlus: {
      auto up = slot("up");
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.error_feedback = true;
      c.momentum = d("momentum");
      c.global_momentum = true;
      if (p.kind == P::kGmcPlus) {
        c.gmc_plus = p.get("option") == "b" ? GmcPlusOption::kB : GmcPlusOption::kA;
        if (c.gmc_plus == GmcPlusOption::kA) {
          c.detach = d("detach");
        } else {
          c.global_momentum = false;
          c.momentum_form = MomentumForm::kHeavyBall;
          c.momentum_placement = MomentumPlacement::kPost;
        }
      }
      break;
    }
    case P::kDefA: {
      auto up = slot("up");
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.family = Family::kDetached;
      c.error_feedback = true;
      c.lr_placement = LrPlacement::kInside;
      c.momentum = d("momentum");
      c.momentum_form = MomentumForm::kHeavyBall;
      c.detach = d("coeff");
      c.period = u("period");
      c.weight_decay = d("wd");
      c.weight_decay_form = c.weight_decay > 0 ? WeightDecayForm::kPlain : WeightDecayForm::kNone;
      break;
    }
    case P::kPowerSgd: {
      auto up = compressor("powersgd:rank=" + p.get("rank") + ",warm_start=" + p.get("warm_start"));
      if (!up.ok()) return up.status();
      c.up = up.value();
      c.error_feedback = true;
      c.aggregation = Aggregation::kPowerSgd;
      c.momentum = d("momentum");
      c.momentum_form = MomentumForm::kNesterov;
      c.momentum_placement = MomentumPlacement::kPost;
      c.nesterov_adds_buffer = true;
      c.weight_decay = d("wd");
      c.weight_decay_form = c.weight_decay > 0 ? WeightDecayForm::kPlain : WeightDecayForm::kNone;
      break;
    }
  }
  return c;
}

const std::vector<PresetInfo>& preset_catalog() {
  static const std::vector<PresetInfo> catalog = [] {
    std::vector<PresetInfo> out;
    for (const auto& d : preset_table()) {
      PresetInfo info{d.kind, d.name, d.summary, {}};
      for (const auto& o : d.options) {
        std::string def = o.default_value;
        auto it = d.slot_defaults.find(o.key);
        if (it != d.slot_defaults.end()) def = it->second;
        info.options.push_back({o.key, def, o.help});
      }
      out.push_back(std::move(info));
    }
    return out;
  }();
  return catalog;
}

}  // namespace gradcomp
