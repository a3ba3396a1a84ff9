// One case of gradcomp-validate (style.md B4 "Flow"): fill, run the implementation, run the
// oracle (ref:any), compare per the table in compare.cpp, decide the status.
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/wire_format.hpp"
#include "validate.hpp"

namespace gradcomp::validation {

const char* case_status_name(CaseStatus s) {
  switch (s) {
    case CaseStatus::kPassed: return "PASSED";
    case CaseStatus::kFailed: return "FAILED";
    case CaseStatus::kMistrusted: return "MISTRUSTED";
    case CaseStatus::kUnimplemented: return "UNIMPLEMENTED";
    case CaseStatus::kSkipped: return "SKIPPED";
    case CaseStatus::kListed: return "LISTED";
  }
  return "?";
}

namespace {

constexpr std::uint8_t kPayloadSentinel = 0xAB;
constexpr float kOutSentinel = 7.0f;
// Samples kept in memory by mode S (trials x n doubles).
constexpr std::uint64_t kMaxStatSamples = std::uint64_t{1} << 24;

struct Runner {
  const Case& c;
  CaseResult& res;
  CompressorOps ops;   // the implementation under test
  CompressorOps rops;  // the oracle
  CompressContext ctx;
  std::vector<float> shared_scalers;

  Runner(const Case& cs, CaseResult& r) : c(cs), res(r) {}

  void fail(const std::string& why) {
    if (res.status != CaseStatus::kFailed) res.reason = why;
    res.status = CaseStatus::kFailed;
    res.counts_as_failure = true;
  }

  // Records a comparison; on mismatch fails the case and dumps the first mismatches.
  bool check(const CompareResult& r) {
    res.stats.merge_stats(r);
    if (r.ok()) return true;
    fail(r.what + ": " + std::to_string(r.nerr) + " of " + std::to_string(r.compared) + " differ");
    std::ostringstream os;
    os.precision(9);
    os << "  [" << r.what << "] first mismatches (idx expected got diff rdiff):";
    res.details.push_back(os.str());
    for (const auto& m : r.first) {
      std::ostringstream line;
      line.precision(9);
      line << "    [" << m.index << "] exp=" << m.expected << " got=" << m.got << " diff=" << m.diff
           << " rdiff=" << m.rdiff;
      res.details.push_back(line.str());
    }
    return false;
  }

  bool same_code(const char* what, const Status& ref_s, const Status& impl_s) {
    if (ref_s.code() == impl_s.code()) return true;
    fail(std::string(what) + ": impl returned '" + impl_s.to_string() + "', oracle '" +
         ref_s.to_string() + "'");
    return false;
  }

  void set_context(const std::vector<float>& in) {
    ctx.step = c.step;
    ctx.rank = c.rank;
    ctx.tensor_id = c.tensor_id;
    if (c.desc.kind == CompressorKind::kTernGrad && c.desc.scaler == TernScaler::kShared) {
      // One worker: the max over workers of the local scalers is this worker's own.
      if (ref::terngrad_local_scalers(c.desc, in, shared_scalers).ok())
        ctx.shared_scalers = Span<const float>(shared_scalers);
    }
  }

  void correctness();
  void bad_inputs(const std::vector<float>& in, const std::vector<std::uint8_t>& p_ref);
  void bitwise();
  void statistical();
  Status target(const std::vector<float>& in, std::vector<double>& t);
};

void Runner::correctness() {
  const auto& d = c.desc;
  std::vector<float> in(d.n);
  std::vector<float> acc0(d.n);
  fill(c.fill, d.seed, DataKind::kSrc, c.rank, Span<float>(in));
  fill(c.fill, d.seed, DataKind::kAcc, c.rank, Span<float>(acc0));
  set_context(in);

  const std::uint64_t pb_ref = rops.payload_bytes(d);
  const std::uint64_t pb_impl = ops.payload_bytes(d);
  res.payload_bytes = pb_ref;
  if (pb_ref != pb_impl)
    return fail("payload_bytes: impl " + std::to_string(pb_impl) + ", oracle " +
                std::to_string(pb_ref));

  std::vector<std::uint8_t> p_ref;
  std::vector<std::uint8_t> p_impl;
  const Status s_ref = rops.compress(d, ctx, in, p_ref);
  const Status s_impl = ops.compress(d, ctx, in, p_impl);
  if (!same_code("compress", s_ref, s_impl)) return;
  if (!s_ref.ok()) {
    res.reason = "both rejected the input: " + s_ref.to_string();
    return;
  }
  const bool var_size = compressor_is_variable_size(d.kind);
  if (var_size ? p_impl.size() > pb_impl : p_impl.size() != pb_impl)
    return fail("compress wrote " + std::to_string(p_impl.size()) +
                " bytes, payload_bytes() says " + std::to_string(pb_impl));

  // Payload bytes: exact wherever the compressor is deterministic given the RNG. On exact
  // fills that is every backend; on real/edge fills a parallel backend may round a scale
  // differently, so the header and length stay exact and the decoded values get a tolerance.
  const CompareResult bytes = compare_bytes(p_ref, p_impl);
  const bool identical = bytes.ok();
  if (!identical) {
    if (c.fill == Fill::kExact) {
      check(bytes);
      return;
    }
    const std::size_t hb = std::min<std::size_t>(kHeaderBytes, p_ref.size());
    CompareResult header = compare_bytes(Span<const std::uint8_t>(p_ref.data(), hb),
                                         Span<const std::uint8_t>(p_impl.data(), hb));
    header.what = "payload header";
    if (!check(header)) return;
    if (p_ref.size() != p_impl.size()) return (void)check(bytes);
  }

  std::vector<float> out_ref(d.n, kOutSentinel);
  std::vector<float> out_impl(d.n, kOutSentinel);
  if (!same_code("decompress", Status::success(), rops.decompress(d, ctx, p_ref, out_ref))) return;
  if (!same_code("decompress", Status::success(), ops.decompress(d, ctx, p_impl, out_impl))) return;
  check(compare_floats(out_ref, out_impl, decode_tolerance(c.fill, identical),
                       "decompress(compress(x))"));
  if (!identical) {
    check(compare_support(out_ref, out_impl));
    // Visible even when it passes: kk:serial is expected to be byte-exact on every fill.
    if (res.status == CaseStatus::kPassed)
      res.reason = std::to_string(bytes.nerr) + " payload bytes differ (within reduction_f32)";
  }

  // Each side decodes the other's payload: the decoders are tested apart from the encoders.
  std::vector<float> cross(d.n, kOutSentinel);
  if (!same_code("impl decompress of the oracle payload", Status::success(),
                 ops.decompress(d, ctx, p_ref, cross)))
    return;
  check(compare_floats(out_ref, cross, decode_tolerance(c.fill, true), "impl D(oracle payload)"));
  std::fill(cross.begin(), cross.end(), kOutSentinel);
  if (!same_code("oracle decompress of the impl payload", Status::success(),
                 rops.decompress(d, ctx, p_impl, cross)))
    return;
  check(compare_floats(out_impl, cross, decode_tolerance(c.fill, true), "oracle D(impl payload)"));

  // out += alpha * D(p). alpha = 0.5 keeps exact fills exact whatever the accumulation order.
  const float alpha = c.fill == Fill::kExact ? 0.5f : 0.3f;
  std::vector<float> acc_ref = acc0;
  std::vector<float> acc_impl = acc0;
  if (!same_code("decompress_accumulate", Status::success(),
                 rops.decompress_accumulate(d, ctx, p_ref, alpha, Span<float>(acc_ref))))
    return;
  if (!same_code("decompress_accumulate", Status::success(),
                 ops.decompress_accumulate(d, ctx, p_ref, alpha, Span<float>(acc_impl))))
    return;
  check(compare_floats(acc_ref, acc_impl, accumulate_tolerance(c.fill), "decompress_accumulate"));

  bad_inputs(in, p_ref);
  if (res.status != CaseStatus::kPassed) return;

  const std::string why = mistrust_reason(d, in, out_ref);
  if (!why.empty()) {
    res.status = CaseStatus::kMistrusted;
    res.counts_as_failure = true;
    res.reason = why;
  }
}

// Bad input must give the oracle's Status code and leave the outputs untouched.
void Runner::bad_inputs(const std::vector<float>& in, const std::vector<std::uint8_t>& p_ref) {
  const auto& d = c.desc;
  auto compress_untouched = [&](const char* what, Span<const float> x) {
    std::vector<std::uint8_t> pr(1, kPayloadSentinel);
    std::vector<std::uint8_t> pi(1, kPayloadSentinel);
    const Status sr = rops.compress(d, ctx, x, pr);
    const Status si = ops.compress(d, ctx, x, pi);
    if (!same_code(what, sr, si)) return;
    if (!si.ok() && pi != std::vector<std::uint8_t>(1, kPayloadSentinel))
      fail(std::string(what) + ": payload modified on error");
  };
  if (d.n > 0) {
    compress_untouched("compress of n-1 elements", Span<const float>(in.data(), in.size() - 1));
    // A NaN in the middle: kNonFinite naming the index under nonfinite=error.
    std::vector<float> bad = in;
    const std::uint64_t at = d.n / 2;
    bad[at] = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::uint8_t> pr;
    std::vector<std::uint8_t> pi(1, kPayloadSentinel);
    const Status sr = rops.compress(d, ctx, bad, pr);
    const Status si = ops.compress(d, ctx, bad, pi);
    if (same_code("compress with a NaN", sr, si) && !sr.ok()) {
      if (pi != std::vector<std::uint8_t>(1, kPayloadSentinel))
        fail("compress with a NaN: payload modified on error");
      const std::string idx = std::to_string(at);
      if (sr.message().find(idx) != std::string::npos &&
          si.message().find(idx) == std::string::npos)
        fail("compress with a NaN: the message does not name index " + idx + ": " + si.message());
    }
  }
  auto decompress_untouched = [&](const char* what, const std::vector<std::uint8_t>& p) {
    std::vector<float> outr(d.n, kOutSentinel);
    std::vector<float> outi(d.n, kOutSentinel);
    const Status sr = rops.decompress(d, ctx, p, outr);
    const Status si = ops.decompress(d, ctx, p, outi);
    if (!same_code(what, sr, si)) return;
    if (!si.ok() && outi != std::vector<float>(d.n, kOutSentinel))
      fail(std::string(what) + ": output modified on error");
    std::vector<float> accr(d.n, kOutSentinel);
    std::vector<float> acci(d.n, kOutSentinel);
    const Status ar = rops.decompress_accumulate(d, ctx, p, 0.5f, Span<float>(accr));
    const Status ai = ops.decompress_accumulate(d, ctx, p, 0.5f, Span<float>(acci));
    if (!same_code(what, ar, ai)) return;
    if (!ai.ok() && acci != std::vector<float>(d.n, kOutSentinel))
      fail(std::string(what) + ": decompress_accumulate modified the output on error");
  };
  std::vector<std::uint8_t> corrupt = p_ref;
  if (!corrupt.empty()) {
    corrupt[0] ^= 0x01;  // magic
    decompress_untouched("decompress with a bad magic", corrupt);
    corrupt = p_ref;
    corrupt.pop_back();  // truncated
    decompress_untouched("decompress of a truncated payload", corrupt);
  }
  if (p_ref.size() >= kHeaderBytes) {
    corrupt = p_ref;
    store_u32(corrupt.data() + 16, ctx.step + 1);  // another step's payload
    decompress_untouched("decompress with a wrong step", corrupt);
  }
}

void Runner::bitwise() {
  const auto& d = c.desc;
  std::vector<float> in(d.n);
  fill(c.fill, d.seed, DataKind::kSrc, c.rank, Span<float>(in));
  set_context(in);
  std::vector<std::uint8_t> p1;
  std::vector<std::uint8_t> p2;
  const Status s1 = ops.compress(d, ctx, in, p1);
  const Status s2 = ops.compress(d, ctx, in, p2);
  if (!same_code("rerun compress", s1, s2)) return;
  if (!s1.ok()) {
    res.reason = "both runs rejected the input: " + s1.to_string();
    return;
  }
  res.payload_bytes = p1.size();
  CompareResult b = compare_bytes(p1, p2);
  b.what = "rerun payload bytes";
  if (!check(b)) return;
  std::vector<float> o1(d.n);
  std::vector<float> o2(d.n);
  if (!same_code("rerun decompress", ops.decompress(d, ctx, p1, o1),
                 ops.decompress(d, ctx, p2, o2)))
    return;
  check(compare_floats(o1, o2, kExactFloats, "rerun decompress"));
}

// E[C(x)] of the compressors mode S tests (docs/compressors/<c>.md, "Properties").
Status Runner::target(const std::vector<float>& in, std::vector<double>& t) {
  const auto& d = c.desc;
  const double n = double(d.n);
  const double k = d.n == 0 ? 0.0 : double(sparsifier_k(d, d.n));
  const double s = d.levels;
  const double beta = std::min(k / (s * s), std::sqrt(k) / s);
  const double f = d.scaled ? 1.0 / (1.0 + beta) : 1.0;
  t.assign(d.n, 0.0);
  switch (d.kind) {
    case CompressorKind::kQsgd:
    case CompressorKind::kTernGrad:
      for (std::size_t j = 0; j < d.n; ++j) t[j] = in[j];
      break;
    case CompressorKind::kRandK: {
      const double a = d.randk_scale == RandKScale::kUnbiased ? 1.0 : k / n;
      for (std::size_t j = 0; j < d.n; ++j) t[j] = a * in[j];
      break;
    }
    case CompressorKind::kQsgdRandK:
      for (std::size_t j = 0; j < d.n; ++j) t[j] = f * (k / n) * in[j];
      break;
    case CompressorKind::kQsgdTopK: {
      // The support is deterministic: the oracle's exact top-k of the same k.
      auto topk = parse_compressor("topk:n=" + std::to_string(d.n) +
                                   ",k=" + std::to_string(std::uint64_t(k)));
      if (!topk.ok()) return topk.status();
      std::vector<std::uint8_t> p;
      std::vector<float> sel(d.n);
      GRADCOMP_TRY(ref::compress(topk.value(), ctx, in, p));
      GRADCOMP_TRY(ref::decompress(topk.value(), ctx, p, Span<float>(sel)));
      for (std::size_t j = 0; j < d.n; ++j) t[j] = f * sel[j];
      break;
    }
    default: break;
  }
  return Status::success();
}

void Runner::statistical() {
  const auto& d = c.desc;
  const std::string why = statistical_unsupported(d);
  if (!why.empty()) {
    res.status = CaseStatus::kSkipped;
    res.reason = why;
    return;
  }
  if (d.n * c.trials > kMaxStatSamples) {
    res.status = CaseStatus::kSkipped;
    res.reason = "n x trials above " + std::to_string(kMaxStatSamples) + " samples";
    return;
  }
  std::vector<float> in(d.n);
  fill(c.fill, d.seed, DataKind::kSrc, c.rank, Span<float>(in));
  set_context(in);
  std::vector<double> tgt;
  const Status ts = target(in, tgt);
  if (!ts.ok()) return fail("target: " + ts.to_string());
  std::vector<double> samples(d.n * c.trials);
  std::vector<std::uint8_t> p;
  std::vector<float> out(d.n);
  for (std::uint32_t t = 0; t < c.trials; ++t) {
    ctx.step = c.step + t;  // distinct RNG streams per trial
    const Status s1 = ops.compress(d, ctx, in, p);
    if (!s1.ok()) return fail("compress: " + s1.to_string());
    const Status s2 = ops.decompress(d, ctx, p, out);
    if (!s2.ok()) return fail("decompress: " + s2.to_string());
    for (std::size_t j = 0; j < d.n; ++j) samples[std::size_t(t) * d.n + j] = out[j];
  }
  res.payload_bytes = p.size();
  const StatResult st = check_unbiased(samples, c.trials, tgt);
  res.stats.max_diff = st.max_z;
  res.stats.max_rdiff = st.mean_z2;
  res.stats.nerr = st.nerr;
  res.stats.compared = d.n;
  if (!st.ok) {
    fail(st.reason);
    res.details.push_back("  first biased elements (idx target mean |diff| z):");
    for (const auto& m : st.first) {
      std::ostringstream line;
      line.precision(9);
      line << "    [" << m.index << "] target=" << m.expected << " mean=" << m.got
           << " diff=" << m.diff << " z=" << m.rdiff;
      res.details.push_back(line.str());
    }
  } else {
    res.reason = "max|z|=" + std::to_string(st.max_z) + " mean z^2=" + std::to_string(st.mean_z2) +
                 " resolved=" + std::to_string(st.resolved) + "/" + std::to_string(d.n);
  }
}

}  // namespace

CaseResult run_case(const Case& c) {
  CaseResult res;
  res.impl_name = c.impl;
  const auto t0 = std::chrono::steady_clock::now();
  if (c.mode == Mode::kList) {
    res.status = CaseStatus::kListed;
    return res;
  }
  auto sel = select_impl(c.desc, c.impl);
  if (!sel.ok()) {
    res.reason = sel.status().message();
    if (c.if_unimplemented == IfUnimplemented::kSkip) {
      res.status = CaseStatus::kSkipped;
    } else {
      res.status = CaseStatus::kUnimplemented;
      res.counts_as_failure = c.impl_named;
    }
    return res;
  }
  const CompressorImpl* impl = sel.value();
  res.impl_name = impl->name;
  auto oracle = select_impl(c.desc, "ref:any");
  if (!oracle.ok()) {
    res.status = CaseStatus::kFailed;
    res.counts_as_failure = true;
    res.reason = "oracle: " + oracle.status().message();
    return res;
  }
  Runner r(c, res);
  r.ops = impl->ops(c.desc.kind);
  r.rops = oracle.value()->ops(c.desc.kind);
  switch (c.mode) {
    case Mode::kCorrectness: r.correctness(); break;
    case Mode::kBitwise:
      if (!impl->deterministic) {
        res.status = CaseStatus::kSkipped;
        res.reason = impl->name + " is not flagged deterministic";
      } else {
        r.bitwise();
      }
      break;
    case Mode::kStatistical: r.statistical(); break;
    case Mode::kList: break;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace gradcomp::validation
