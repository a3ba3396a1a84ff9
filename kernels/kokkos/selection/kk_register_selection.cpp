// Registers the selection kernels that exist in this folder with the Kokkos table: topk, dgc,
// threshold, signtopk here; qsgd, qsgd_topk and qsgd_randk in kk_sel_qsgd.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/host_plans.hpp"
#include "kk_sel_common.hpp"

namespace gradcomp::kk {
namespace sel {
namespace {

std::uint64_t sparse_bytes(std::uint64_t count) { return 8 * count; }

// Writes k top-k (index, value) pairs straight into a fresh sparse payload.
Status topk_into(const CompressorDesc& desc, UView<const float> in, std::uint64_t k,
                 UView<std::uint32_t> idx, UView<float> val) {
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  const std::uint64_t bad = select_topk(in, k, check, idx, val);
  if (bad != kNone) return Status(StatusCode::kNonFinite, std::to_string(bad));
  return Status::success();
}

Status nonfinite_from(const CompressorDesc& desc, Span<const float> in, const Status& s) {
  if (s.code() != StatusCode::kNonFinite) return s;
  return nonfinite_status(desc, in, std::stoull(s.message()));
}

// Count of elements passing a predicate fused with the first non-finite index.
struct CountBad {
  std::uint64_t count;
  std::uint64_t bad;
};
template <class Pred>
struct CountBadFunctor {
  using value_type = CountBad;
  UView<const float> in;
  Pred pred;
  bool check;
  KOKKOS_INLINE_FUNCTION void init(value_type& v) const {
    v.count = 0;
    v.bad = kNone;
  }
  KOKKOS_INLINE_FUNCTION void join(value_type& d, const value_type& s) const {
    d.count += s.count;
    if (s.bad < d.bad) d.bad = s.bad;
  }
  KOKKOS_INLINE_FUNCTION void join(volatile value_type& d, const volatile value_type& s) const {
    d.count += s.count;
    if (s.bad < d.bad) d.bad = s.bad;
  }
  std::uint64_t n;
  KOKKOS_INLINE_FUNCTION void operator()(const std::uint64_t c, value_type& v) const {
    const std::uint64_t e = chunk_end(c, n);
    std::uint64_t count = 0;
    bool any = false;
    for (std::uint64_t i = c * kChunk; i < e; ++i) {
      const float x = in(i);
      count += pred(x) ? 1u : 0u;
      any |= key_nonfinite(abs_key(x));
    }
    v.count += count;
    if (!check || !any) return;
    for (std::uint64_t i = c * kChunk; i < e; ++i) {
      if (key_nonfinite(abs_key(in(i)))) {
        if (i < v.bad) v.bad = i;
        return;
      }
    }
  }
};
template <class Pred>
CountBad count_if(UView<const float> in, Pred pred, bool check) {
  CountBad r{0, kNone};
  Kokkos::parallel_reduce("gradcomp::kk::count_if", Range<>(0, chunks(in.extent(0))),
                          CountBadFunctor<Pred>{in, pred, check, in.extent(0)}, r);
  return r;
}

// ---- topk -------------------------------------------------------------------------------------

std::uint64_t topk_payload_bytes(const CompressorDesc& desc) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (desc.n > 0 && k >= desc.n) return kHeaderBytes + 4 * desc.n;
  return kHeaderBytes + sparse_bytes(k);
}

Status topk_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                     std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (desc.n > 0 && k >= desc.n) return write_dense(desc, ctx, in, payload);
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, k, 0, sparse_bytes(k), p));
  if (k == 0) {
    if (desc.nonfinite == NonfinitePolicy::kError) {
      const std::uint64_t bad = first_nonfinite(view_of(in));
      if (bad != kNone) return nonfinite_status(desc, in, bad);
    }
  } else {
    std::uint8_t* body = p.data() + kHeaderBytes;
    const Status s = topk_into(desc, view_of(in), k,
                               UView<std::uint32_t>(reinterpret_cast<std::uint32_t*>(body), k),
                               UView<float>(reinterpret_cast<float*>(body + 4 * k), k));
    if (!s.ok()) return nonfinite_from(desc, in, s);
  }
  payload.swap(p);
  return Status::success();
}

// Sparse (index, value) list decode shared by topk, dgc and threshold. value_ok(v) is the
// compressor's per-value rule (dgc: non-zero; threshold: above tau); finiteness under
// nonfinite=error is checked for every kind (the reference's decoded-value check).
template <class ValueOk>
Status decode_sparse_list(const CompressorDesc& desc, const WireHeader& header,
                          Span<const std::uint8_t> body, std::uint64_t count_max, ValueOk value_ok,
                          const char* value_rule, bool accumulate, float alpha, Span<float> out) {
  const std::uint64_t count = header.count;
  GRADCOMP_CHECK_PAYLOAD(count <= count_max, "header count ", count, " exceeds the maximum ",
                         count_max, " for this descriptor");
  GRADCOMP_CHECK_PAYLOAD(body.size() == sparse_bytes(count), "sparse body is ", body.size(),
                         " bytes, expected ", sparse_bytes(count), " for ", count,
                         " (index, value) pairs");
  const UView<const std::uint32_t> idx = u32_view(body.data(), count);
  const UView<const float> val = f32_view(body.data() + 4 * count, count);
  const std::uint64_t n = desc.n;
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  // One pass: index errors rank before value errors (key i vs count + i), like the reference
  // which checks the whole index list first.
  std::uint64_t bad = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::check_sparse", Range<>(0, count),
      KOKKOS_LAMBDA(const std::uint64_t i, std::uint64_t& m) {
        const std::uint32_t v = idx(i);
        std::uint64_t key = kNone;
        if (!(v < n && (i == 0 || v > idx(i - 1)))) {
          key = i;
        } else {
          const float x = val(i);
          if (!value_ok(x) || (check && key_nonfinite(abs_key(x)))) key = count + i;
        }
        if (key < m) m = key;
      },
      Kokkos::Min<std::uint64_t>(bad));
  if (bad != kNone) {
    const auto* ip = reinterpret_cast<const std::uint32_t*>(body.data());
    if (bad < count) return describe_bad_index(ip, bad, n);
    const std::uint64_t i = bad - count;
    const float x = load_f32(body.data() + 4 * count + 4 * i);
    GRADCOMP_CHECK_PAYLOAD(value_ok(x), "value[", i, "] = ", x, " (index ", ip[i], ") ",
                           value_rule);
    return make_status(StatusCode::kCorruptPayload, "value[", i, "] = ", x,
                       " is not finite (nonfinite=error)");
  }
  apply_sparse(idx, val, accumulate, alpha, view_of(out));
  return Status::success();
}

struct NotPlusZero {
  KOKKOS_INLINE_FUNCTION bool operator()(float x) const { return float_bits(x) != 0u; }
};
struct AnyValue {
  KOKKOS_INLINE_FUNCTION bool operator()(float) const { return true; }
};
struct NonZero {
  KOKKOS_INLINE_FUNCTION bool operator()(float x) const { return x != 0.0f; }
};
struct Above {
  double thr;
  KOKKOS_INLINE_FUNCTION bool operator()(float x) const {
    return static_cast<double>(bits_float(float_bits(x) & 0x7FFFFFFFu)) > thr;
  }
};

template <bool kAccumulate>
Status topk_decode(const CompressorDesc& desc, const CompressContext& ctx,
                   Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  const char* name = compressor_name(desc.kind);
  const Span<const std::uint8_t> body(payload.data() + kHeaderBytes, h.body_bytes);
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = desc.n > 0 && k >= desc.n;
  bool done = false;
  Status s = decode_if_dense(desc, h, body, k, dense, kAccumulate, alpha, out, done);
  if (s.ok() && !done) {
    if (h.count != k) {
      s = make_status(StatusCode::kCorruptPayload, "count ", h.count, " != k ", k);
    } else {
      s = decode_sparse_list(desc, h, body, k, AnyValue{}, "", kAccumulate, alpha, out);
    }
  }
  if (!s.ok()) return make_status(s.code(), name, ": ", s.message());
  return Status::success();
}

// ---- threshold ----------------------------------------------------------------------------------

std::uint64_t threshold_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + 4 * desc.n;
}

bool threshold_prefers_dense(std::uint64_t count, std::uint64_t n) {
  return n > 0 && 8 * count >= 4 * n;
}

// The smallest key whose value exceeds thr (>= 0) in double: |x| > thr <=> key >= K for
// non-NaN x, so the kernels compare integers. Found by bisection (the predicate is monotone).
std::uint32_t threshold_key(double thr) {
  if (!(thr < static_cast<double>(INFINITY))) return 0xFFFFFFFFu;  // nothing passes
  std::uint32_t lo = 0, hi = kInfKey;                              // +Inf > thr always
  while (lo < hi) {
    const std::uint32_t mid = lo + (hi - lo) / 2;
    if (static_cast<double>(bits_float(mid)) > thr) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

Status threshold_compress(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const std::uint32_t tk = threshold_key(std::max(desc.tau, 0.0));
  const UView<const float> x = view_of(in);
  const std::uint64_t n = desc.n;
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  // One pass: the selected pairs go to scratch lists while |S| < n / 2 (the sparse form);
  // beyond that the dense form is chosen and written by a second pass. The first non-finite
  // index is found in the same pass (atomic min: only chunks holding one pay for it).
  const std::uint64_t cap = n / 2;
  // Scratch kept per thread and reused (grown, never zeroed), so repeated calls do not pay
  // for page faults or zero-filling.
  thread_local std::unique_ptr<std::uint32_t[]> si;
  thread_local std::unique_ptr<float[]> sf;
  thread_local std::uint64_t scratch_cap = 0;
  if (scratch_cap < cap + 1) {
    si.reset(new std::uint32_t[cap + 1]);
    sf.reset(new float[cap + 1]);
    scratch_cap = cap + 1;
  }
  const UView<std::uint32_t> iv(si.get(), cap + 1);
  const UView<float> vv(sf.get(), cap + 1);
  std::uint64_t first_bad = kNone;
  const UView<std::uint64_t> bad_v(&first_bad, 1);
  // Which compaction loop: estimate the pass rate from 1024 evenly spaced elements (host).
  std::uint64_t sample_pass = 0;
  const std::uint64_t probes = n < 1024 ? n : 1024;
  for (std::uint64_t t = 0; t < probes; ++t) {
    const std::uint32_t key = abs_key(in[t * n / probes]);
    sample_pass += ((key >= tk) & (key != kNanKey)) ? 1u : 0u;
  }
  const bool sparse_mode = sample_pass * 16 < probes;
  std::uint64_t count = 0;
  if (sparse_mode) {
    // Few pass: block counting with a scalar walk of the blocks that hold one; keys in
    // [tk, kInfKey] (NaN is never selected).
    const Taken r = take_keys(x, tk, kInfKey, check, iv, vv);
    count = r.count;
    first_bad = r.first_bad;
  } else {
    // Many pass: branch-free compaction (every element written at the current slot, clamped
    // to the spare slot `cap`; at |S| >= cap the dense form is used anyway, so the clamped
    // slot is never read).
    Kokkos::parallel_scan(
        "gradcomp::kk::threshold_take", Range<>(0, chunks(n)),
        KOKKOS_LAMBDA(const std::uint64_t ch, std::uint64_t& pos, const bool final) {
          const std::uint64_t e = chunk_end(ch, n);
          std::uint64_t at = pos;
          std::uint32_t any = 0;
          for (std::uint64_t i = ch * kChunk; i < e; ++i) {
            const float v = x(i);
            const std::uint32_t key = abs_key(v);
            any |= key_nonfinite(key) ? 1u : 0u;
            if (final) {
              const std::uint64_t slot = at < cap ? at : cap;
              iv(slot) = static_cast<std::uint32_t>(i);
              vv(slot) = v;
            }
            at += ((key >= tk) & (key != kNanKey)) ? 1u : 0u;
          }
          if (final && check && any != 0) {
            for (std::uint64_t i = ch * kChunk; i < e; ++i) {
              if (key_nonfinite(abs_key(x(i)))) {
                Kokkos::atomic_fetch_min(&bad_v(0), i);
                break;
              }
            }
          }
          pos = at;
        },
        count);
  }
  if (first_bad != kNone) return nonfinite_status(desc, in, first_bad);
  std::vector<std::uint8_t> p;
  if (threshold_prefers_dense(count, n)) {
    GRADCOMP_TRY(new_payload(desc, ctx, n, kFlagDense, 4 * n, p));
    UView<float> dst(reinterpret_cast<float*>(p.data() + kHeaderBytes), n);
    // C(v): v on S, +0 elsewhere (NaN is never selected).
    Kokkos::parallel_for(
        "gradcomp::kk::threshold_dense", Range<>(0, n), KOKKOS_LAMBDA(const std::uint64_t i) {
          const float v = x(i);
          const std::uint32_t key = abs_key(v);
          dst(i) = (key >= tk && key != kNanKey) ? v : 0.0f;
        });
  } else {
    GRADCOMP_TRY(new_payload(desc, ctx, count, 0, sparse_bytes(count), p));
    std::memcpy(p.data() + kHeaderBytes, si.get(), 4 * count);
    std::memcpy(p.data() + kHeaderBytes + 4 * count, sf.get(), 4 * count);
  }
  payload.swap(p);
  return Status::success();
}

template <bool kAccumulate>
Status threshold_decode(const CompressorDesc& desc, const CompressContext& ctx,
                        Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  const char* name = compressor_name(desc.kind);
  const Span<const std::uint8_t> body(payload.data() + kHeaderBytes, h.body_bytes);
  const Above sel{std::max(desc.tau, 0.0)};
  Status s;
  if (h.flags & kFlagDense) {
    if (desc.n == 0) {
      s = make_status(StatusCode::kCorruptPayload, "dense flag set for n = 0");
    } else if (h.count != h.n || body.size() != 4 * desc.n) {
      s = check_dense(desc, h, body);
    } else {
      // Every entry is +0 or selected (first bad index), and enough are selected that the
      // sender had to choose dense; then finiteness.
      const UView<const float> v = f32_view(body.data(), desc.n);
      const bool check = desc.nonfinite == NonfinitePolicy::kError;
      // One chunked pass: the non-zero count and the first entry that is neither +0 nor
      // selected.
      const CountBad c = count_if(v, NotPlusZero{}, false);
      const std::uint32_t tk = threshold_key(sel.thr);
      std::uint64_t bad = kNone;
      const std::uint64_t n = desc.n;
      Kokkos::parallel_reduce(
          "gradcomp::kk::threshold_check_dense", Range<>(0, chunks(n)),
          KOKKOS_LAMBDA(const std::uint64_t ch, std::uint64_t& m) {
            const std::uint64_t e = chunk_end(ch, n);
            bool any = false;
            for (std::uint64_t i = ch * kChunk; i < e; ++i) {
              const std::uint32_t key = abs_key(v(i));
              const bool pass = (key >= tk) & (key != kNanKey);
              any |= (float_bits(v(i)) != 0u) & !pass;
            }
            if (!any) return;
            for (std::uint64_t i = ch * kChunk; i < e; ++i) {
              const float x = v(i);
              if (float_bits(x) != 0u && !sel(x)) {
                if (i < m) m = i;
                return;
              }
            }
          },
          Kokkos::Min<std::uint64_t>(bad));
      const std::uint64_t nnz = c.count;
      if (bad != kNone) {
        s = make_status(StatusCode::kCorruptPayload, "dense value[", bad,
                        "] = ", load_f32(body.data() + 4 * bad),
                        " is neither +0 nor above the threshold ", sel.thr);
      } else {
        if (!threshold_prefers_dense(nnz, desc.n)) {
          s = make_status(StatusCode::kCorruptPayload, "dense payload with only ", nnz,
                          " selected values of n = ", desc.n,
                          " (the sparse form is smaller and must be used)");
        } else if (check) {
          s = check_dense(desc, h, body);
        }
      }
      if (s.ok()) apply_dense(v, kAccumulate, alpha, view_of(out));
    }
  } else if (threshold_prefers_dense(h.count, desc.n)) {
    s = make_status(StatusCode::kCorruptPayload, "sparse payload with count ", h.count,
                    " for n = ", desc.n, " (not smaller than dense: the dense form must be used)");
  } else {
    s = decode_sparse_list(desc, h, body, h.count, sel, "does not exceed the threshold",
                           kAccumulate, alpha, out);
  }
  if (!s.ok()) return make_status(s.code(), name, ": ", s.message());
  return Status::success();
}

// ---- dgc
// ------------------------------------------------------------------------------------------

// Candidate test "|x| >= thr" with NaN above everything: on keys, key(x) >= key(thr) (a NaN
// threshold has kNanKey, which admits only NaNs).
struct AtLeast {
  std::uint32_t key;
  KOKKOS_INLINE_FUNCTION bool operator()(float x) const { return abs_key(x) >= key; }
};

std::uint64_t dgc_payload_bytes(const CompressorDesc& desc) { return topk_payload_bytes(desc); }

// Compacts the non-zero pairs of (idx, val) (count long) into the payload's sparse body.
Status write_nonzero(const CompressorDesc& desc, const CompressContext& ctx,
                     UView<const std::uint32_t> idx, UView<const float> val,
                     std::vector<std::uint8_t>& p) {
  const std::uint64_t count = idx.extent(0);
  std::uint64_t nz = 0;
  Kokkos::parallel_reduce(
      "gradcomp::kk::dgc_nonzero", Range<>(0, count),
      KOKKOS_LAMBDA(const std::uint64_t i, std::uint64_t& c) { c += val(i) != 0.0f ? 1u : 0u; },
      nz);
  GRADCOMP_TRY(new_payload(desc, ctx, nz, 0, sparse_bytes(nz), p));
  std::uint8_t* body = p.data() + kHeaderBytes;
  UView<std::uint32_t> oi(reinterpret_cast<std::uint32_t*>(body), nz);
  UView<float> ov(reinterpret_cast<float*>(body + 4 * nz), nz);
  Kokkos::parallel_scan(
      "gradcomp::kk::dgc_compact", Range<>(0, count),
      KOKKOS_LAMBDA(const std::uint64_t i, std::uint64_t& pos, const bool final) {
        if (val(i) != 0.0f) {
          if (final) {
            oi(pos) = idx(i);
            ov(pos) = val(i);
          }
          ++pos;
        }
      });
  return Status::success();
}

Status dgc_compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                    std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  // The sampling plan is shared with CUDA (kernels/common/host_plans.hpp).
  const kernels::host::DgcPlan plan = kernels::host::dgc_plan(desc);
  const std::uint64_t n = desc.n;
  if (n > 0 && plan.k >= n) return write_dense(desc, ctx, in, payload);
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  const UView<const float> x = view_of(in);
  std::vector<std::uint8_t> p;
  if (plan.k == 0) {
    const std::uint64_t bad = check ? first_nonfinite(x) : kNone;
    if (bad != kNone) return nonfinite_status(desc, in, bad);
    GRADCOMP_TRY(new_payload(desc, ctx, 0, 0, 0, p));
    payload.swap(p);
    return Status::success();
  }
  std::vector<std::uint32_t> idx(plan.k);
  std::vector<float> val(plan.k);
  const UView<std::uint32_t> iv(idx.data(), plan.k);
  const UView<float> vv(val.data(), plan.k);
  bool exact = desc.selection == DgcSelection::kExact;
  std::uint32_t thr_key = 0;
  if (!exact) {
    // samples = |x|[off :: stride]; threshold = the k_samp-th largest sample (NaN largest).
    std::uint64_t off = 0;
    if (plan.stride > 1) {
      const RngStream rng(desc.seed, RngPurpose::kDgcSampling, ctx.step, ctx.tensor_id, ctx.rank);
      off = rng.uniform_below(plan.stride, 0);
    }
    const std::uint64_t m = (n - off + plan.stride - 1) / plan.stride;
    std::vector<float> samples(m);
    const UView<float> sv(samples.data(), m);
    const std::uint64_t stride = plan.stride;
    Kokkos::parallel_for(
        "gradcomp::kk::dgc_sample", Range<>(0, m),
        KOKKOS_LAMBDA(const std::uint64_t i) { sv(i) = x(off + i * stride); });
    thr_key = kth_key(UView<const float>(samples.data(), m), plan.k_samp, false).key;
    // One full pass per threshold: count the candidates and keep the first k of them in
    // index order (the code's truncation), so the usual case (0.8 k <= count <= 1.3 k after
    // the first threshold) reads the input once. The first pass also finds the first
    // non-finite element.
    const std::uint64_t k = plan.k;
    std::uint64_t first_bad = kNone;
    auto take = [&](std::uint32_t t, bool check_now) {
      const Taken r = take_keys(x, t, kNanKey, check_now, iv, vv);
      if (check_now) first_bad = r.first_bad;
      return r.count;
    };
    std::uint64_t c = take(thr_key, check);
    if (first_bad != kNone) return nonfinite_status(desc, in, first_bad);
    if (n > plan.n_samp) {
      const double kd = static_cast<double>(k);
      for (int round = 0; round < 10; ++round) {
        const double cd = static_cast<double>(c);
        if (cd > kd) {
          // > 1.3 k: exact top-k among the candidates. The candidates are every element with
          // key >= thr and there are more than k, so that is the global exact top-k.
          exact = cd > 1.3 * kd;
          break;
        } else if (cd < 0.8 * kd) {
          // thr * 0.8 in float arithmetic, as the DGC code multiplies a float32 tensor.
          const float thr = thr_key == kNanKey ? std::nanf("") : bits_float(thr_key);
          thr_key = abs_key(thr * 0.8f);
          c = take(thr_key, false);
        } else {
          break;
        }
      }
    }
    if (!exact) {
      // Zeros are dropped after the truncation, as in the reference.
      const std::uint64_t kept = std::min(c, k);
      GRADCOMP_TRY(write_nonzero(desc, ctx, UView<const std::uint32_t>(idx.data(), kept),
                                 UView<const float>(val.data(), kept), p));
      payload.swap(p);
      return Status::success();
    }
  }
  const Status s = topk_into(desc, x, plan.k, iv, vv);
  if (!s.ok()) return nonfinite_from(desc, in, s);
  GRADCOMP_TRY(write_nonzero(desc, ctx, UView<const std::uint32_t>(idx.data(), plan.k),
                             UView<const float>(val.data(), plan.k), p));
  payload.swap(p);
  return Status::success();
}

template <bool kAccumulate>
Status dgc_decode(const CompressorDesc& desc, const CompressContext& ctx,
                  Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  const char* name = compressor_name(desc.kind);
  const Span<const std::uint8_t> body(payload.data() + kHeaderBytes, h.body_bytes);
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = desc.n > 0 && k >= desc.n;
  bool done = false;
  Status s = decode_if_dense(desc, h, body, k, dense, kAccumulate, alpha, out, done);
  if (s.ok() && !done) {
    s = decode_sparse_list(desc, h, body, k, NonZero{}, "is zero, but zero values are never sent",
                           kAccumulate, alpha, out);
  }
  if (!s.ok()) return make_status(s.code(), name, ": ", s.message());
  return Status::success();
}

// ---- signtopk ---------------------------------------------------------------------------------

std::uint64_t signtopk_body(std::uint64_t k) { return k == 0 ? 0 : 4 * k + packed_bytes(k, 1) + 4; }

std::uint64_t signtopk_payload_bytes(const CompressorDesc& desc) {
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (desc.n > 0 && k >= desc.n) return kHeaderBytes + 4 * desc.n;
  return kHeaderBytes + signtopk_body(k);
}

Status signtopk_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  if (desc.n > 0 && k >= desc.n) return write_dense(desc, ctx, in, payload);
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, k, 0, signtopk_body(k), p));
  if (k == 0) {
    const std::uint64_t bad =
        desc.nonfinite == NonfinitePolicy::kError ? first_nonfinite(view_of(in)) : kNone;
    if (bad != kNone) return nonfinite_status(desc, in, bad);
    payload.swap(p);
    return Status::success();
  }
  std::uint8_t* body = p.data() + kHeaderBytes;
  std::vector<float> val(k);
  const UView<float> vv(val.data(), k);
  const Status s = topk_into(desc, view_of(in), k,
                             UView<std::uint32_t>(reinterpret_cast<std::uint32_t*>(body), k), vv);
  if (!s.ok()) return nonfinite_from(desc, in, s);
  // ||Top_k||_1 in double. On Serial the reduction adds in index order, which is the
  // reference's order; a parallel backend would need a tolerance on the scale.
  double l1 = 0.0;
  Kokkos::parallel_reduce(
      "gradcomp::kk::signtopk_l1", Range<>(0, k),
      KOKKOS_LAMBDA(const std::uint64_t i, double& a) {
        a += static_cast<double>(bits_float(float_bits(vv(i)) & 0x7FFFFFFFu));
      },
      l1);
  const float scale = static_cast<float>(l1 / static_cast<double>(k));
  // Sign bits word-at-a-time: word w holds the signs of selected values 32w .. 32w + 31.
  const std::uint64_t words = packed_bytes(k, 1) / 4;
  UView<std::uint32_t> sw(reinterpret_cast<std::uint32_t*>(body + 4 * k), words);
  Kokkos::parallel_for(
      "gradcomp::kk::signtopk_signs", Range<>(0, words), KOKKOS_LAMBDA(const std::uint64_t w) {
        std::uint32_t bits = 0;
        const std::uint64_t base = 32 * w;
        const std::uint32_t lim = static_cast<std::uint32_t>(k - base < 32 ? k - base : 32);
        for (std::uint32_t b = 0; b < lim; ++b) bits |= (vv(base + b) < 0.0f ? 1u : 0u) << b;
        sw(w) = bits;
      });
  store_f32(body + 4 * k + 4 * words, scale);
  payload.swap(p);
  return Status::success();
}

template <bool kAccumulate>
Status signtopk_decode(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  const char* name = compressor_name(desc.kind);
  const Span<const std::uint8_t> body(payload.data() + kHeaderBytes, h.body_bytes);
  const std::uint64_t k = sparsifier_k(desc, desc.n);
  const bool dense = desc.n > 0 && k >= desc.n;
  auto fail = [&](const Status& st) { return make_status(st.code(), name, ": ", st.message()); };
  bool done = false;
  const Status s = decode_if_dense(desc, h, body, k, dense, kAccumulate, alpha, out, done);
  if (!s.ok()) return fail(s);
  if (done) return Status::success();
  if (h.count != k)
    return fail(make_status(StatusCode::kCorruptPayload, "count ", h.count, " != k ", k));
  if (body.size() != signtopk_body(k))
    return fail(make_status(StatusCode::kCorruptPayload, "body is ", body.size(),
                            " bytes, expected ", signtopk_body(k), " for k = ", k,
                            " (indices, sign bits, scale)"));
  if (k == 0) {
    apply_sparse(UView<const std::uint32_t>(), UView<const float>(), kAccumulate, alpha,
                 view_of(out));
    return Status::success();
  }
  const UView<const std::uint32_t> idx = u32_view(body.data(), k);
  const std::uint64_t bad = first_bad_index(idx, desc.n);
  if (bad != kNone)
    return fail(
        describe_bad_index(reinterpret_cast<const std::uint32_t*>(body.data()), bad, desc.n));
  const std::uint8_t* sign_bits = body.data() + 4 * k;
  const std::uint64_t words = packed_bytes(k, 1) / 4;
  if (k % 32 != 0 && (load_u32(sign_bits + 4 * (words - 1)) >> (k % 32)) != 0)
    return fail(make_status(StatusCode::kCorruptPayload, "sign padding bits after bit ", k,
                            " are not zero"));
  const float scale = load_f32(sign_bits + 4 * words);
  if (std::signbit(scale))
    return fail(make_status(StatusCode::kCorruptPayload, "scale ", scale, " is negative"));
  if (!std::isfinite(scale) && desc.nonfinite != NonfinitePolicy::kPropagate)
    return fail(make_status(StatusCode::kCorruptPayload, "scale ", scale,
                            " is not finite (nonfinite=error)"));
  std::vector<float> val(k);
  const UView<float> vv(val.data(), k);
  const UView<const std::uint32_t> sw = u32_view(sign_bits, words);
  Kokkos::parallel_for(
      "gradcomp::kk::signtopk_decode", Range<>(0, k), KOKKOS_LAMBDA(const std::uint64_t i) {
        vv(i) = ((sw(i / 32) >> (i % 32)) & 1u) ? -scale : scale;
      });
  apply_sparse(idx, UView<const float>(val.data(), k), kAccumulate, alpha, view_of(out));
  return Status::success();
}

}  // namespace

void register_sparse_family(KkTable& table) {
  table[CompressorKind::kTopK] =
      small_ops<topk_decode<false>, topk_decode<true>>(topk_payload_bytes, topk_compress);
  table[CompressorKind::kThreshold] = small_ops<threshold_decode<false>, threshold_decode<true>>(
      threshold_payload_bytes, threshold_compress);
  table[CompressorKind::kDgc] =
      small_ops<dgc_decode<false>, dgc_decode<true>>(dgc_payload_bytes, dgc_compress);
  table[CompressorKind::kSignTopK] = small_ops<signtopk_decode<false>, signtopk_decode<true>>(
      signtopk_payload_bytes, signtopk_compress);
}

}  // namespace sel

void register_selection(KkTable& table) {
  sel::register_sparse_family(table);
  sel::register_qsgd_family(table);
}

}  // namespace gradcomp::kk
