// Case-string parsing and printing for compressor descriptors, and the derived quantities
// (k, segments, blocks) that every backend shares.
#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>

#include "gradcomp/compressor.hpp"

namespace gradcomp {
namespace {

using K = CompressorKind;

struct KindName {
  K kind;
  const char* name;
  const char* summary;
  bool variable_size;
};

constexpr KindName kKinds[] = {
    {K::kIdentity, "identity", "fp32 values, uncompressed (the baseline)", false},
    {K::kFp16, "fp16", "IEEE half precision, round to nearest even", false},
    {K::kBf16, "bf16", "bfloat16, round to nearest even", false},
    {K::kSign, "sign", "1 bit per element, sgn(0) = +1, no scale (decodes to +-1)", false},
    {K::kBlockSign, "blocksign",
     "blockwise scaled sign: s_b * sgn(v), s_b = L1 mean (dist-EF-blockSGD), L2 or none", false},
    {K::kQsgd, "qsgd", "QSGD stochastic quantization to s levels per bucket (unbiased)", false},
    {K::kTernGrad, "terngrad", "TernGrad stochastic ternarization, optional clipping", false},
    {K::kTopK, "topk", "exact top-k by |x| (ties: lower index), value+index pairs", false},
    {K::kDgc, "dgc", "DGC sampled-threshold top-k (code-faithful) or exact selection", true},
    {K::kRandK, "randk", "random-k, shared indices (values only) or private (pairs)", false},
    {K::kThreshold, "threshold", "elements with |x| > tau, value+index pairs", true},
    {K::kGrbs, "grbs", "CSER globally-randomized block of tensor rows/cols (shared RNG)", true},
    {K::kRbgs, "rbgs", "GMC random block per tensor (URSB wrap-around rule, shared RNG)", true},
    {K::kQsgdTopK, "qsgd_topk", "Qsparse QSGD of the top-k values (Q_s o Top_k)", false},
    {K::kQsgdRandK, "qsgd_randk", "Qsparse QSGD of random-k values (Q_s o Rand_k)", false},
    {K::kSignTopK, "signtopk", "Qsparse SignTop_k: (L1/k) * sgn on the top-k support", false},
    {K::kPowerSgd, "powersgd", "PowerSGD rank-r approximation P Q^T per matrix tensor", false},
};

const std::initializer_list<K> kSparsifiers = {K::kTopK,     K::kDgc,       K::kRandK,   K::kRbgs,
                                               K::kQsgdTopK, K::kQsgdRandK, K::kSignTopK};

struct OptionDef {
  std::string key;
  std::string help;
  std::vector<K> kinds;  // empty: common to every compressor
  std::function<bool(const CompressorDesc&)> present;
  std::function<std::string(const CompressorDesc&)> print;
  std::function<Status(CompressorDesc&, std::string_view)> parse;
};

template <class E>
struct EnumToken {
  E value;
  const char* token;
};

template <class E, std::size_t N>
OptionDef enum_option(std::string key, std::string help, std::vector<K> kinds,
                      E CompressorDesc::*member, const EnumToken<E> (&tokens)[N]) {
  std::vector<EnumToken<E>> list(tokens, tokens + N);
  OptionDef d;
  d.key = key;
  std::string choices;
  for (const auto& t : list) choices += (choices.empty() ? "" : "|") + std::string(t.token);
  d.help = help + " (" + choices + ")";
  d.kinds = std::move(kinds);
  d.print = [member, list](const CompressorDesc& c) {
    for (const auto& t : list)
      if (t.value == c.*member) return std::string(t.token);
    return std::string("?");
  };
  d.parse = [member, list, key, choices](CompressorDesc& c, std::string_view v) {
    for (const auto& t : list) {
      if (v == t.token) {
        c.*member = t.value;
        return Status::success();
      }
    }
    return make_status(StatusCode::kInvalidArgument, "option '", key, "': '", v, "' is not one of ",
                       choices);
  };
  return d;
}

OptionDef bool_option(std::string key, std::string help, std::vector<K> kinds,
                      bool CompressorDesc::*member) {
  OptionDef d;
  d.key = key;
  d.help = help + " (0|1)";
  d.kinds = std::move(kinds);
  d.print = [member](const CompressorDesc& c) { return std::string(c.*member ? "1" : "0"); };
  d.parse = [member, key](CompressorDesc& c, std::string_view v) {
    if (v == "0" || v == "1") {
      c.*member = (v == "1");
      return Status::success();
    }
    return make_status(StatusCode::kInvalidArgument, "option '", key, "': '", v,
                       "' must be 0 or 1");
  };
  return d;
}

OptionDef double_option(std::string key, std::string help, std::vector<K> kinds,
                        double CompressorDesc::*member) {
  OptionDef d;
  d.key = key;
  d.help = std::move(help);
  d.kinds = std::move(kinds);
  d.print = [member](const CompressorDesc& c) { return format_double(c.*member); };
  d.parse = [member, key](CompressorDesc& c, std::string_view v) {
    auto r = parse_double(key, v);
    if (!r.ok()) return r.status();
    c.*member = r.value();
    return Status::success();
  };
  return d;
}

template <class U>
OptionDef uint_option(std::string key, std::string help, std::vector<K> kinds,
                      U CompressorDesc::*member) {
  OptionDef d;
  d.key = key;
  d.help = std::move(help);
  d.kinds = std::move(kinds);
  d.print = [member](const CompressorDesc& c) { return std::to_string(c.*member); };
  d.parse = [member, key](CompressorDesc& c, std::string_view v) {
    auto r = parse_uint(key, v);
    if (!r.ok()) return r.status();
    if (r.value() > static_cast<unsigned long long>(std::numeric_limits<U>::max())) {
      return make_status(StatusCode::kInvalidArgument, "option '", key, "': ", v,
                         " is out of range");
    }
    c.*member = static_cast<U>(r.value());
    return Status::success();
  };
  return d;
}

std::string print_shapes(const CompressorDesc& c) {
  std::string s;
  for (std::size_t t = 0; t < c.shapes.size(); ++t) {
    if (t) s += '/';
    for (std::size_t a = 0; a < c.shapes[t].size(); ++a) {
      if (a) s += 'x';
      s += std::to_string(c.shapes[t][a]);
    }
  }
  return s;
}

Status parse_shapes(CompressorDesc& c, std::string_view v) {
  c.shapes.clear();
  std::size_t start = 0;
  while (start <= v.size()) {
    const std::size_t slash = std::min(v.find('/', start), v.size());
    std::string_view tensor = v.substr(start, slash - start);
    std::vector<std::uint64_t> shape;
    std::size_t a = 0;
    while (a <= tensor.size()) {
      const std::size_t x = std::min(tensor.find('x', a), tensor.size());
      auto r = parse_uint("shapes", tensor.substr(a, x - a));
      if (!r.ok()) {
        return make_status(StatusCode::kInvalidArgument,
                           "option 'shapes': expected shapes like 64x27/64, got '", v, "'");
      }
      if (r.value() == 0) {
        return make_status(StatusCode::kInvalidArgument, "option 'shapes': extent 0 in '", v,
                           "' (empty tensors cannot be part of a layout)");
      }
      shape.push_back(r.value());
      a = x + 1;
    }
    c.shapes.push_back(std::move(shape));
    start = slash + 1;
  }
  return Status::success();
}

const std::vector<OptionDef>& option_table() {
  static const std::vector<OptionDef> table = [] {
    std::vector<OptionDef> t;
    t.push_back(uint_option("n", "elements of the flattened input", {}, &CompressorDesc::n));
    t.push_back(uint_option("seed", "global seed of the counter RNG", {}, &CompressorDesc::seed));
    {
      OptionDef d =
          double_option("density", "fraction of elements kept: k = ceil(density*n)",
                        {kSparsifiers.begin(), kSparsifiers.end()}, &CompressorDesc::density);
      d.present = [](const CompressorDesc& c) { return c.k < 0; };
      t.push_back(d);
      OptionDef kd;
      kd.key = "k";
      kd.help = "explicit number of elements kept (instead of density)";
      kd.kinds = {kSparsifiers.begin(), kSparsifiers.end()};
      kd.kinds.erase(std::remove(kd.kinds.begin(), kd.kinds.end(), K::kRbgs), kd.kinds.end());
      kd.present = [](const CompressorDesc& c) { return c.k >= 0; };
      kd.print = [](const CompressorDesc& c) { return std::to_string(c.k); };
      kd.parse = [](CompressorDesc& c, std::string_view v) {
        auto r = parse_uint("k", v);
        if (!r.ok()) return r.status();
        if (r.value() > static_cast<unsigned long long>(INT64_MAX)) {
          return make_status(StatusCode::kInvalidArgument, "option 'k': ", v, " is too large");
        }
        c.k = static_cast<std::int64_t>(r.value());
        return Status::success();
      };
      t.push_back(kd);
    }
    static constexpr EnumToken<SignScale> kScale[] = {
        {SignScale::kL1, "l1"}, {SignScale::kL2, "l2"}, {SignScale::kNone, "none"}};
    t.push_back(enum_option("scale", "block scale: L1 mean, L2/sqrt(d_b), or none", {K::kBlockSign},
                            &CompressorDesc::scale, kScale));
    {
      OptionDef d = uint_option("block", "block size; 0 = one block per tensor segment",
                                {K::kBlockSign}, &CompressorDesc::block);
      t.push_back(d);
    }
    t.push_back(uint_option("levels", "quantization levels s >= 1",
                            {K::kQsgd, K::kQsgdTopK, K::kQsgdRandK}, &CompressorDesc::levels));
    t.push_back(uint_option("bucket", "bucket size; 0 = one bucket per tensor segment", {K::kQsgd},
                            &CompressorDesc::bucket));
    static constexpr EnumToken<QsgdNorm> kNorm[] = {{QsgdNorm::kL2, "l2"}, {QsgdNorm::kMax, "max"}};
    t.push_back(enum_option("norm", "bucket norm", {K::kQsgd, K::kQsgdTopK, K::kQsgdRandK},
                            &CompressorDesc::norm, kNorm));
    t.push_back(bool_option("scaled", "multiply by 1/(1+beta_{k,s}), beta = min(k/s^2, sqrt(k)/s)",
                            {K::kQsgdTopK, K::kQsgdRandK}, &CompressorDesc::scaled));
    t.push_back(double_option("clip", "clip factor c (clamp to +-c*sigma); 0 disables",
                              {K::kTernGrad}, &CompressorDesc::clip));
    static constexpr EnumToken<TernScaler> kScaler[] = {{TernScaler::kLocal, "local"},
                                                        {TernScaler::kShared, "shared"}};
    t.push_back(enum_option("scaler", "per-segment scaler: own, or the max over workers",
                            {K::kTernGrad}, &CompressorDesc::scaler, kScaler));
    static constexpr EnumToken<IndexMode> kIdx[] = {{IndexMode::kShared, "shared"},
                                                    {IndexMode::kPrivate, "private"}};
    t.push_back(enum_option("indices", "random indices shared by all ranks or per rank",
                            {K::kRandK, K::kQsgdRandK}, &CompressorDesc::indices, kIdx));
    static constexpr EnumToken<RandKScale> kRks[] = {{RandKScale::kNone, "none"},
                                                     {RandKScale::kUnbiased, "unbiased"}};
    t.push_back(enum_option("rescale", "multiply kept values by n/k to be unbiased", {K::kRandK},
                            &CompressorDesc::randk_scale, kRks));
    t.push_back(double_option("sample_ratio", "fraction of elements sampled for the threshold",
                              {K::kDgc}, &CompressorDesc::sample_ratio));
    static constexpr EnumToken<DgcSelection> kSel[] = {{DgcSelection::kCode, "code"},
                                                       {DgcSelection::kExact, "exact"}};
    t.push_back(enum_option("selection", "sampled threshold as in the DGC code, or exact top-k",
                            {K::kDgc}, &CompressorDesc::selection, kSel));
    t.push_back(
        double_option("tau", "threshold: keep |x| > tau", {K::kThreshold}, &CompressorDesc::tau));
    t.push_back(double_option("rho_layer", "probability that a tensor is selected", {K::kGrbs},
                              &CompressorDesc::rho_layer));
    t.push_back(double_option("rho0", "fraction of axis-0 rows in the block", {K::kGrbs},
                              &CompressorDesc::rho0));
    t.push_back(double_option("rho1", "fraction of axis-1 columns in the block", {K::kGrbs},
                              &CompressorDesc::rho1));
    static constexpr EnumToken<RoundMode> kRound[] = {{RoundMode::kHalfEven, "half_even"},
                                                      {RoundMode::kHalfUp, "half_up"}};
    t.push_back(enum_option("round", "rounding of rho*d (half_even = Python round)", {K::kGrbs},
                            &CompressorDesc::round, kRound));
    static constexpr EnumToken<RbgsAlign> kAlign[] = {{RbgsAlign::kWrap, "wrap"},
                                                      {RbgsAlign::kPartition, "partition"}};
    t.push_back(enum_option("align", "block at any offset with wrap-around, or aligned partition",
                            {K::kRbgs}, &CompressorDesc::align, kAlign));
    t.push_back(
        uint_option("rank", "approximation rank r >= 1", {K::kPowerSgd}, &CompressorDesc::rank));
    t.push_back(bool_option("warm_start", "reuse the previous Q", {K::kPowerSgd},
                            &CompressorDesc::warm_start));
    t.push_back(double_option("eps", "added to column norms in Gram-Schmidt", {K::kPowerSgd},
                              &CompressorDesc::eps));
    {
      OptionDef d;
      d.key = "shapes";
      d.help = "tensor layout, e.g. 64x27/64 (default: one 1-D tensor of n)";
      d.present = [](const CompressorDesc& c) { return !c.shapes.empty(); };
      d.print = print_shapes;
      d.parse = parse_shapes;
      t.push_back(d);
    }
    static constexpr EnumToken<NonfinitePolicy> kNf[] = {
        {NonfinitePolicy::kError, "error"}, {NonfinitePolicy::kPropagate, "propagate"}};
    t.push_back(enum_option("nonfinite", "NaN/Inf in the input: reject or pass through", {},
                            &CompressorDesc::nonfinite, kNf));
    return t;
  }();
  return table;
}

bool applies(const OptionDef& d, K kind) {
  return d.kinds.empty() || std::find(d.kinds.begin(), d.kinds.end(), kind) != d.kinds.end();
}

std::uint64_t product(const std::vector<std::uint64_t>& shape) {
  std::uint64_t p = 1;
  for (auto e : shape) p *= e;
  return p;
}

}  // namespace

const char* compressor_name(CompressorKind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "?";
}

bool compressor_is_variable_size(CompressorKind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.variable_size;
  return false;
}

Result<CompressorKind> compressor_kind_from_name(std::string_view name) {
  std::string known;
  for (const auto& k : kKinds) {
    if (name == k.name) return k.kind;
    known += (known.empty() ? "" : ", ") + std::string(k.name);
  }
  return make_status(StatusCode::kInvalidArgument, "unknown compressor '", name,
                     "'; known: ", known);
}

bool CompressorDesc::operator==(const CompressorDesc& o) const {
  // Compare what the canonical string shows: fields that do not apply to the kind are ignored.
  return kind == o.kind && to_string() == o.to_string();
}

std::string CompressorDesc::to_string() const {
  CaseString cs;
  cs.name = compressor_name(kind);
  for (const auto& d : option_table()) {
    if (!applies(d, kind)) continue;
    if (d.present && !d.present(*this)) continue;
    cs.options.emplace_back(d.key, d.print(*this));
  }
  return cs.to_string();
}

Result<CompressorDesc> parse_compressor(std::string_view text) {
  auto cs = parse_case_string(text);
  if (!cs.ok()) return cs.status();
  auto kind = compressor_kind_from_name(cs->name);
  if (!kind.ok()) return kind.status();
  CompressorDesc desc;
  desc.kind = kind.value();
  bool has_n = false, has_density = false, has_k = false;
  for (const auto& [key, value] : cs->options) {
    const OptionDef* def = nullptr;
    for (const auto& d : option_table())
      if (d.key == key) def = &d;
    if (def == nullptr || !applies(*def, desc.kind)) {
      std::string valid;
      for (const auto& d : option_table())
        if (applies(d, desc.kind)) valid += (valid.empty() ? "" : ", ") + d.key;
      return make_status(StatusCode::kInvalidArgument, cs->name, ": unknown option '", key,
                         "' (valid: ", valid, ")");
    }
    Status s = def->parse(desc, value);
    if (!s.ok()) return make_status(s.code(), cs->name, ": ", s.message());
    has_n |= key == "n";
    has_density |= key == "density";
    has_k |= key == "k";
  }
  if (has_density && has_k) {
    return make_status(StatusCode::kInvalidArgument, cs->name,
                       ": give either 'density' or 'k', not both");
  }
  if (!has_n && !desc.shapes.empty()) {
    desc.n = 0;
    for (const auto& s : desc.shapes) desc.n += product(s);
  }
  GRADCOMP_TRY(validate(desc));
  return desc;
}

Status validate(const CompressorDesc& d) {
  const char* name = compressor_name(d.kind);
  GRADCOMP_CHECK_ARG(std::string(name) != "?", "unknown compressor id ",
                     int(static_cast<std::uint8_t>(d.kind)));
  GRADCOMP_CHECK_ARG(d.n <= 0xFFFFFFFFull, name, ": n = ", d.n,
                     " exceeds 2^32 - 1, the largest tensor the wire format indexes");
  if (!d.shapes.empty()) {
    std::uint64_t total = 0;
    for (const auto& s : d.shapes) {
      GRADCOMP_CHECK_ARG(!s.empty(), name, ": a tensor shape has no extents");
      total += product(s);
    }
    GRADCOMP_CHECK_ARG(total == d.n, name, ": shapes hold ", total, " elements but n = ", d.n);
  }
  GRADCOMP_CHECK_ARG(d.density >= 0.0 && d.density <= 1.0, name,
                     ": density must be in [0, 1], got ", d.density);
  GRADCOMP_CHECK_ARG(d.levels >= 1, name, ": levels must be >= 1, got ", d.levels);
  GRADCOMP_CHECK_ARG(d.levels <= (1u << 30), name, ": levels must be <= 2^30, got ", d.levels);
  GRADCOMP_CHECK_ARG(d.clip >= 0.0, name, ": clip must be >= 0, got ", d.clip);
  GRADCOMP_CHECK_ARG(d.sample_ratio > 0.0 && d.sample_ratio <= 1.0, name,
                     ": sample_ratio must be in (0, 1], got ", d.sample_ratio);
  GRADCOMP_CHECK_ARG(d.rho_layer >= 0.0 && d.rho_layer <= 1.0, name,
                     ": rho_layer must be in [0, 1], got ", d.rho_layer);
  GRADCOMP_CHECK_ARG(d.rho0 > 0.0 && d.rho0 <= 1.0, name, ": rho0 must be in (0, 1], got ", d.rho0);
  GRADCOMP_CHECK_ARG(d.rho1 > 0.0 && d.rho1 <= 1.0, name, ": rho1 must be in (0, 1], got ", d.rho1);
  GRADCOMP_CHECK_ARG(d.rank >= 1, name, ": rank must be >= 1, got ", d.rank);
  GRADCOMP_CHECK_ARG(d.eps >= 0.0, name, ": eps must be >= 0, got ", d.eps);
  return Status::success();
}

const std::vector<CompressorInfo>& compressor_catalog() {
  static const std::vector<CompressorInfo> catalog = [] {
    std::vector<CompressorInfo> out;
    CompressorDesc defaults;
    for (const auto& k : kKinds) {
      CompressorInfo info{k.kind, k.name, k.summary, {}, k.variable_size};
      defaults.kind = k.kind;
      for (const auto& d : option_table()) {
        if (d.kinds.empty() || !applies(d, k.kind)) continue;
        info.options.push_back({d.key, d.key == "k" ? "-" : d.print(defaults), d.help});
      }
      out.push_back(std::move(info));
    }
    return out;
  }();
  return catalog;
}

const std::vector<OptionInfo>& common_options() {
  static const std::vector<OptionInfo> common = [] {
    std::vector<OptionInfo> out;
    CompressorDesc defaults;
    for (const auto& d : option_table()) {
      if (!d.kinds.empty()) continue;
      out.push_back({d.key, d.key == "shapes" ? "-" : d.print(defaults), d.help});
    }
    return out;
  }();
  return common;
}

std::uint64_t sparsifier_k(const CompressorDesc& desc, std::uint64_t m) {
  if (desc.k >= 0) return std::min<std::uint64_t>(static_cast<std::uint64_t>(desc.k), m);
  if (desc.density <= 0.0 || m == 0) return 0;
  const long double x = static_cast<long double>(desc.density) * static_cast<long double>(m);
  const long double guarded = x - x * 1e-12L;  // 0.001 * 1000 must give 1, not 2
  std::uint64_t k = static_cast<std::uint64_t>(std::ceil(guarded));
  return std::clamp<std::uint64_t>(k, 1, m);
}

std::vector<Segment> tensor_segments(const CompressorDesc& desc) {
  std::vector<Segment> segs;
  if (desc.shapes.empty()) {
    if (desc.n > 0) segs.push_back({0, desc.n, {desc.n}});
    return segs;
  }
  std::uint64_t off = 0;
  for (const auto& s : desc.shapes) {
    const std::uint64_t size = product(s);
    segs.push_back({off, size, s});
    off += size;
  }
  return segs;
}

namespace {
std::vector<Segment> fixed_blocks(std::uint64_t n, std::uint64_t size) {
  std::vector<Segment> out;
  for (std::uint64_t off = 0; off < n; off += size) {
    const std::uint64_t len = std::min(size, n - off);
    out.push_back({off, len, {len}});
  }
  return out;
}
}  // namespace

std::vector<Segment> sign_blocks(const CompressorDesc& desc) {
  if (desc.block == 0) return tensor_segments(desc);
  return fixed_blocks(desc.n, desc.block);
}

std::vector<Segment> qsgd_buckets(const CompressorDesc& desc) {
  if (desc.bucket == 0) return tensor_segments(desc);
  return fixed_blocks(desc.n, desc.bucket);
}

std::uint32_t qsgd_level_bits(std::uint32_t levels) {
  std::uint32_t bits = 0;
  while ((1ull << bits) < static_cast<std::uint64_t>(levels) + 1) ++bits;
  return bits;
}

}  // namespace gradcomp
