// Radix select, payload framing and the sparse apply step shared by the selection kernels.
#include "kk_sel_common.hpp"

#include <cmath>

namespace gradcomp::kk::sel {
namespace {

// Histogram of (key >> shift) & (bins - 1) over the elements whose key matches `prefix` above
// bit `prefix_shift`, as an array reduction (portable; on Serial there is one accumulator, so no
// atomics). On large unfiltered passes consecutive elements go to kWays interleaved copies of
// the histogram: typical gradients hit a few hundred bins, and one copy makes every increment
// wait for the previous store to the same bin (a store-to-load chain); the copies are summed on
// the host. The last slot holds the first non-finite index (min-joined) when check_finite.
constexpr std::uint32_t kWays = 4;
constexpr std::uint64_t kWaysMinN = std::uint64_t{1} << 18;  // below: zeroing the copies costs more

template <class Space>
struct KeyHistogram {
  using value_type = std::uint32_t[];
  using size_type = std::uint32_t;
  size_type value_count;  // ways * bins + 1
  std::uint32_t ways;     // 1 or kWays
  UView<const float, Space> in;
  std::uint32_t shift;
  std::uint32_t prefix_shift;  // 32: no filter
  std::uint32_t prefix;
  bool check_finite;

  KOKKOS_INLINE_FUNCTION void init(value_type v) const {
    for (size_type b = 0; b + 1 < value_count; ++b) v[b] = 0;
    v[value_count - 1] = 0xFFFFFFFFu;
  }
  KOKKOS_INLINE_FUNCTION void join(value_type dst, const value_type src) const {
    for (size_type b = 0; b + 1 < value_count; ++b) dst[b] += src[b];
    if (src[value_count - 1] < dst[value_count - 1]) dst[value_count - 1] = src[value_count - 1];
  }
  KOKKOS_INLINE_FUNCTION void join(volatile value_type dst, const volatile value_type src) const {
    for (size_type b = 0; b + 1 < value_count; ++b) dst[b] += src[b];
    if (src[value_count - 1] < dst[value_count - 1]) dst[value_count - 1] = src[value_count - 1];
  }
  std::uint64_t n;
  KOKKOS_INLINE_FUNCTION void operator()(const std::uint64_t c, value_type v) const {
    const std::uint64_t b = c * kChunk, e = chunk_end(c, n);
    const std::uint32_t bins = (value_count - 1) / ways;
    const std::uint32_t sh = shift, psh = prefix_shift, pre = prefix, mask = bins - 1;
    std::uint32_t any_bad = 0;  // integer OR: no branch per element
    std::uint64_t i = b;
    if (ways == kWays && psh >= 32) {
      std::uint32_t* const h0 = v;
      std::uint32_t* const h1 = v + bins;
      std::uint32_t* const h2 = v + 2 * bins;
      std::uint32_t* const h3 = v + 3 * bins;
      for (; i + kWays <= e; i += kWays) {
        const std::uint32_t k0 = abs_key(in(i)), k1 = abs_key(in(i + 1));
        const std::uint32_t k2 = abs_key(in(i + 2)), k3 = abs_key(in(i + 3));
        any_bad |= static_cast<std::uint32_t>(key_nonfinite(k0)) |
                   static_cast<std::uint32_t>(key_nonfinite(k1)) |
                   static_cast<std::uint32_t>(key_nonfinite(k2)) |
                   static_cast<std::uint32_t>(key_nonfinite(k3));
        h0[(k0 >> sh) & mask] += 1;
        h1[(k1 >> sh) & mask] += 1;
        h2[(k2 >> sh) & mask] += 1;
        h3[(k3 >> sh) & mask] += 1;
      }
    }
    for (; i < e; ++i) {  // one copy: filtered or small passes, and the tail
      const std::uint32_t key = abs_key(in(i));
      any_bad |= static_cast<std::uint32_t>(key_nonfinite(key));
      if (psh < 32 && (key >> psh) != pre) continue;
      v[(key >> sh) & mask] += 1;
    }
    if (check_finite && any_bad != 0) {
      for (i = b; i < e; ++i) {
        // n < 2^32 (can_implement), so the index fits the u32 slot.
        if (key_nonfinite(abs_key(in(i)))) {
          if (static_cast<std::uint32_t>(i) < v[value_count - 1])
            v[value_count - 1] = static_cast<std::uint32_t>(i);
          break;
        }
      }
    }
  }
};

// Walks a histogram from the top bin down: the bin holding the `rank`-th largest (1-based), and
// how many elements lie in higher bins.
void find_bin(const std::vector<std::uint32_t>& h, std::uint64_t rank, std::uint32_t& bin,
              std::uint64_t& above) {
  above = 0;
  for (std::size_t b = h.size(); b-- > 0;) {
    if (above + h[b] >= rank) {
      bin = static_cast<std::uint32_t>(b);
      return;
    }
    above += h[b];
  }
  bin = 0;
}

std::vector<std::uint32_t> histogram(UView<const float> in, std::uint32_t bits, std::uint32_t shift,
                                     std::uint32_t prefix_shift, std::uint32_t prefix,
                                     bool check_finite, std::uint32_t& first_bad) {
  const std::uint32_t bins = 1u << bits;
  const std::uint32_t nways = prefix_shift >= 32 && in.extent(0) >= kWaysMinN ? kWays : 1;
  KeyHistogram<Exec> f{nways * bins + 1, nways,  in,           shift,
                       prefix_shift,     prefix, check_finite, in.extent(0)};
  std::vector<std::uint32_t> ways(nways * bins + 1);
  Kokkos::View<std::uint32_t*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> res(
      ways.data(), ways.size());
  Kokkos::parallel_reduce("gradcomp::kk::topk_histogram", Range<>(0, chunks(in.extent(0))), f, res);
  first_bad = ways.back();
  std::vector<std::uint32_t> h(ways.begin(), ways.begin() + bins);
  for (std::uint32_t w = 1; w < nways; ++w)
    for (std::uint32_t b = 0; b < bins; ++b) h[b] += ways[w * bins + b];
  return h;
}

// take_keys counts over blocks of kTakeBlock elements with plain integer loops that GCC
// vectorises (a bool accumulator or a branch per element would not be); only blocks holding a
// taken element are walked again, with a branch. They test the raw |x| bits (every NaN its
// own pattern above kInfKey) instead of abs_key: its NaN select made GCC unswitch the loop into
// a scalar copy for the usual hi = kNanKey; take_keys maps [lo, hi] to an equivalent raw range.
constexpr std::uint64_t kTakeBlock = 64;
KOKKOS_INLINE_FUNCTION std::uint32_t raw_key(float x) { return float_bits(x) & 0x7FFFFFFFu; }
KOKKOS_INLINE_FUNCTION std::uint32_t count_keys(const float* x, std::uint64_t len, std::uint32_t lo,
                                                std::uint32_t span, std::uint32_t& any_bad) {
  std::uint32_t hits = 0, bad = 0;
  for (std::uint64_t i = 0; i < len; ++i) {
    const std::uint32_t key = raw_key(x[i]);
    hits += key - lo <= span ? 1u : 0u;
    bad |= key >= kInfKey ? 1u : 0u;
  }
  any_bad |= bad;
  return hits;
}

// count_keys for a range open at the top (hi' = 2^31 - 1, select_topk's take): keys are < 2^31,
// so one signed compare per element. No non-finite test: every non-finite key is in the range,
// so the walk of the hit blocks sees them all. Half the vector work of count_keys.
KOKKOS_INLINE_FUNCTION std::uint32_t count_from(const float* x, std::uint64_t len,
                                                std::int32_t lo_m1) {
  std::uint32_t hits = 0;
  for (std::uint64_t i = 0; i < len; ++i)
    hits += static_cast<std::int32_t>(raw_key(x[i])) > lo_m1 ? 1u : 0u;
  return hits;
}

// Bit t of m[j]: element 4t + j of a whole block has a key above lo_m1 (open-top range).
KOKKOS_INLINE_FUNCTION void block_masks(const float* x, std::int32_t lo_m1, std::uint32_t m[4]) {
  m[0] = m[1] = m[2] = m[3] = 0;
  for (std::uint32_t t = 0; t < kTakeBlock / 4; ++t) {
    const float* r = x + 4 * t;
    const std::uint32_t bit = 1u << t;
    m[0] |= static_cast<std::int32_t>(raw_key(r[0])) > lo_m1 ? bit : 0u;
    m[1] |= static_cast<std::int32_t>(raw_key(r[1])) > lo_m1 ? bit : 0u;
    m[2] |= static_cast<std::int32_t>(raw_key(r[2])) > lo_m1 ? bit : 0u;
    m[3] |= static_cast<std::int32_t>(raw_key(r[3])) > lo_m1 ? bit : 0u;
  }
}

// select_topk's sampled threshold: inputs of at least kSampleMinN elements, at least kSamples
// samples and one per kSampleStride elements: more samples give a tighter rank (the padding
// grows as the square root), so fewer candidates to take and select at density 0.01.
constexpr std::uint64_t kSampleMinN = std::uint64_t{1} << 16;
constexpr std::uint64_t kSamples = std::uint64_t{1} << 14;
constexpr std::uint64_t kSampleStride = 256;

}  // namespace

Status check_compress_args(const CompressorDesc& desc, Span<const float> in) {
  GRADCOMP_TRY(validate(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(in.size() == desc.n, name, ": input has ", in.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(in.size() == 0 || in.data() != nullptr, name, ": null input pointer");
  return Status::success();
}

Status nonfinite_status(const CompressorDesc& desc, Span<const float> in, std::uint64_t i) {
  return make_status(StatusCode::kNonFinite, compressor_name(desc.kind), ": input[", i,
                     "] = ", in[i],
                     " is not finite (nonfinite=error; use nonfinite=propagate to allow)");
}

Status check_decompress_args(const CompressorDesc& desc, const CompressContext& ctx,
                             Span<const std::uint8_t> payload, Span<float> out,
                             WireHeader& header) {
  GRADCOMP_TRY(validate(desc));
  const char* name = compressor_name(desc.kind);
  GRADCOMP_CHECK_ARG(out.size() == desc.n, name, ": output has ", out.size(),
                     " elements but the descriptor says n = ", desc.n);
  GRADCOMP_CHECK_ARG(payload.size() == 0 || payload.data() != nullptr, name,
                     ": null payload pointer");
  Status s = read_header(payload, desc.kind, desc.n, ctx.step, ctx.tensor_id, &header);
  if (!s.ok()) return make_status(s.code(), name, ": ", s.message());
  return Status::success();
}

std::uint64_t first_nonfinite(UView<const float> in) {
  std::uint64_t bad = kNone;
  const std::uint64_t n = in.extent(0);
  Kokkos::parallel_reduce(
      "gradcomp::kk::first_nonfinite", Range<>(0, chunks(n)),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& m) {
        const std::uint64_t e = chunk_end(c, n);
        std::uint32_t any = 0;  // integer OR keeps the loop vectorisable (a bool does not)
        for (std::uint64_t i = c * kChunk; i < e; ++i) {
          any |= static_cast<std::uint32_t>(key_nonfinite(abs_key(in(i))));
        }
        if (any == 0) return;
        for (std::uint64_t i = c * kChunk; i < e; ++i) {
          if (key_nonfinite(abs_key(in(i)))) {
            if (i < m) m = i;
            return;
          }
        }
      },
      Kokkos::Min<std::uint64_t>(bad));
  return bad;
}

Taken take_keys(UView<const float> in, std::uint32_t lo, std::uint32_t hi, bool check,
                UView<std::uint32_t> idx, UView<float> val) {
  // abs_key in [lo, hi] <=> raw_key in [lo', hi'], where a bound in the NaN range
  // (kInfKey, kNanKey] moves to its edge: every NaN is in, or none is. Then
  // raw in [lo', hi'] <=> raw - lo' <= hi' - lo' (unsigned): one compare per element. An empty
  // range becomes lo' = 2^32 - 1, span 0, which no key (< 2^31) passes.
  if (lo > kInfKey && lo <= kNanKey) lo = kInfKey + 1;
  if (hi > kInfKey) hi = hi >= kNanKey ? 0x7FFFFFFFu : kInfKey;
  const std::uint32_t span = lo <= hi ? hi - lo : 0;
  if (lo > hi) lo = 0xFFFFFFFFu;
  const bool open_top = hi == 0x7FFFFFFFu && lo <= 0x7FFFFFFFu;
  const std::int32_t lo_m1 = open_top ? static_cast<std::int32_t>(lo) - 1 : 0;
  const std::uint64_t n = in.extent(0), cap = idx.extent(0);
  const float* const x = in.data();
  std::uint32_t* const oi = idx.data();
  float* const ov = val.data();
  Taken r;
  const UView<std::uint64_t> bad_v(&r.first_bad, 1);
  Kokkos::parallel_scan(
      "gradcomp::kk::take_keys", Range<>(0, chunks(n)),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& pos, const bool final) {
        const std::uint64_t e = chunk_end(c, n);
        std::uint64_t at = pos;
        std::uint32_t any_bad = 0;
        for (std::uint64_t b = c * kChunk; b < e; b += kTakeBlock) {
          const std::uint64_t len = e - b < kTakeBlock ? e - b : kTakeBlock;
          // A constant trip count for whole blocks: no vector epilogue per block.
          std::uint32_t hits;
          if (open_top)
            hits = len == kTakeBlock ? count_from(x + b, kTakeBlock, lo_m1)
                                     : count_from(x + b, len, lo_m1);
          else
            hits = len == kTakeBlock ? count_keys(x + b, kTakeBlock, lo, span, any_bad)
                                     : count_keys(x + b, len, lo, span, any_bad);
          // Past cap the walk stops early: test the whole block for non-finite keys instead.
          if (final && open_top && at + hits > cap) count_keys(x + b, len, lo, span, any_bad);
          if (final && open_top && hits != 0 && len == kTakeBlock && at + hits <= cap) {
            std::uint32_t m[4];
            block_masks(x + b, lo_m1, m);
            std::uint64_t w = at;
            for (std::uint32_t rows = m[0] | m[1] | m[2] | m[3]; rows != 0; rows &= rows - 1) {
              const auto t = static_cast<std::uint32_t>(__builtin_ctz(rows));
              std::uint32_t row = ((m[0] >> t) & 1u) | ((m[1] >> t) & 1u) << 1 |
                                  ((m[2] >> t) & 1u) << 2 | ((m[3] >> t) & 1u) << 3;
              for (; row != 0; row &= row - 1) {
                const std::uint64_t i = b + 4 * t + static_cast<std::uint32_t>(__builtin_ctz(row));
                const float v = x[i];
                any_bad |= raw_key(v) >= kInfKey ? 1u : 0u;
                oi[w] = static_cast<std::uint32_t>(i);
                ov[w] = v;
                ++w;
              }
            }
          } else if (final && hits != 0 && at < cap) {
            // Rare on the sparse paths: a scalar walk of this block only.
            std::uint64_t w = at;
            const std::uint64_t w_end = at + hits < cap ? at + hits : cap;
            for (std::uint64_t i = b; w < w_end; ++i) {
              const float v = x[i];
              if (raw_key(v) - lo <= span) {
                any_bad |= raw_key(v) >= kInfKey ? 1u : 0u;
                oi[w] = static_cast<std::uint32_t>(i);
                ov[w] = v;
                ++w;
              }
            }
          }
          at += hits;
        }
        if (final && check && any_bad != 0) {
          for (std::uint64_t i = c * kChunk; i < e; ++i) {
            if (key_nonfinite(abs_key(x[i]))) {
              Kokkos::atomic_fetch_min(&bad_v(0), i);
              break;
            }
          }
        }
        pos = at;
      },
      r.count);
  return r;
}

Status new_payload(const CompressorDesc& desc, const CompressContext& ctx, std::uint64_t count,
                   std::uint8_t flags, std::uint64_t body_bytes, std::vector<std::uint8_t>& out) {
  GRADCOMP_CHECK_ARG(body_bytes <= 0xFFFFFFFFull, compressor_name(desc.kind), ": body of ",
                     body_bytes, " bytes exceeds the 32-bit body_bytes header field");
  GRADCOMP_CHECK_ARG(count <= 0xFFFFFFFFull, compressor_name(desc.kind), ": count ", count,
                     " exceeds the 32-bit header field");
  out.assign(kHeaderBytes + body_bytes, 0);
  WireHeader h;
  h.compressor = static_cast<std::uint8_t>(desc.kind);
  h.flags = flags;
  h.n = desc.n;
  h.step = ctx.step;
  h.tensor_id = ctx.tensor_id;
  h.count = static_cast<std::uint32_t>(count);
  h.body_bytes = static_cast<std::uint32_t>(body_bytes);
  write_header(h, out.data());
  return Status::success();
}

Status write_dense(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                   std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(new_payload(desc, ctx, desc.n, kFlagDense, 4 * desc.n, p));
  UView<const float> src = view_of(in);
  UView<float> dst(reinterpret_cast<float*>(p.data() + kHeaderBytes), desc.n);
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  std::uint64_t bad = kNone;
  const std::uint64_t n = desc.n;
  Kokkos::parallel_reduce(
      "gradcomp::kk::dense_copy", Range<>(0, chunks(n)),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& m) {
        const std::uint64_t e = chunk_end(c, n);
        bool any = false;
        for (std::uint64_t i = c * kChunk; i < e; ++i) {
          const float x = src(i);
          dst(i) = x;
          any |= key_nonfinite(abs_key(x));
        }
        if (!check || !any) return;
        for (std::uint64_t i = c * kChunk; i < e; ++i) {
          if (key_nonfinite(abs_key(src(i)))) {
            if (i < m) m = i;
            return;
          }
        }
      },
      Kokkos::Min<std::uint64_t>(bad));
  if (bad != kNone) return nonfinite_status(desc, in, bad);
  payload.swap(p);
  return Status::success();
}

KthKey kth_key(UView<const float> in, std::uint64_t k, bool check_finite) {
  KthKey r;
  // Pass 1: bits 16..30 of the key (15 bits); pass 2: bits 0..15 within the chosen bin.
  std::uint32_t bad = 0xFFFFFFFFu;
  const std::vector<std::uint32_t> h1 = histogram(in, 15, 16, 32, 0, check_finite, bad);
  if (bad != 0xFFFFFFFFu) {
    r.first_bad = bad;
    return r;
  }
  std::uint32_t b1 = 0, b2 = 0;
  std::uint64_t above1 = 0, above2 = 0;
  find_bin(h1, k, b1, above1);
  // Pass 2 on the elements of bin b1 only, gathered by a vectorised take (its size is known):
  // a filtered histogram over the whole input costs a scalar branch per element.
  const std::uint64_t in_bin = h1[b1];
  thread_local std::vector<std::uint32_t> bi;
  thread_local std::vector<float> bv;
  if (bv.size() < in_bin) {
    bi.resize(in_bin);
    bv.resize(in_bin);
  }
  take_keys(in, b1 << 16, (b1 << 16) | 0xFFFFu, false, UView<std::uint32_t>(bi.data(), in_bin),
            UView<float>(bv.data(), in_bin));
  const std::vector<std::uint32_t> h2 =
      histogram(UView<const float>(bv.data(), in_bin), 16, 0, 32, 0, false, bad);
  find_bin(h2, k - above1, b2, above2);
  r.key = (b1 << 16) | b2;
  r.greater = above1 + above2;
  r.ties_needed = k - r.greater;
  return r;
}

void emit_topk(UView<const float> in, const KthKey& t, UView<std::uint32_t> idx, UView<float> val,
               UView<const std::uint32_t> src) {
  const bool remap = src.extent(0) > 0;
  const std::uint32_t thr = t.key;
  const std::uint64_t need = t.ties_needed;
  // Scan value: (ties seen) << 32 | (greater seen); both < 2^32 (n < 2^32). The output slot of
  // a selected element is greater_before + min(ties_before, need): associative, so the same
  // scan is correct on a parallel backend.
  const std::uint64_t n = in.extent(0);
  Kokkos::parallel_scan(
      "gradcomp::kk::topk_emit", Range<>(0, chunks(n)),
      KOKKOS_LAMBDA(const std::uint64_t c, std::uint64_t& acc, const bool final) {
        const std::uint64_t e = chunk_end(c, n);
        std::uint64_t gt = acc & 0xFFFFFFFFu, ties = acc >> 32;
        const std::uint64_t gt0 = gt, ties0 = ties;
        if (final) {
          for (std::uint64_t i = c * kChunk; i < e; ++i) {
            const float x = in(i);
            const std::uint32_t key = abs_key(x);
            if (key > thr || (key == thr && ties < need)) {
              const std::uint64_t pos = gt + (ties < need ? ties : need);
              idx(pos) = remap ? src(i) : static_cast<std::uint32_t>(i);
              val(pos) = x;
            }
            gt += key > thr ? 1u : 0u;
            ties += key == thr ? 1u : 0u;
          }
        } else {
          for (std::uint64_t i = c * kChunk; i < e; ++i) {
            const std::uint32_t key = abs_key(in(i));
            gt += key > thr ? 1u : 0u;
            ties += key == thr ? 1u : 0u;
          }
        }
        acc += ((ties - ties0) << 32) + (gt - gt0);
      });
}

std::uint64_t select_topk(UView<const float> in, std::uint64_t k, bool check,
                          UView<std::uint32_t> idx, UView<float> val) {
  const std::uint64_t n = in.extent(0);
  thread_local std::vector<std::uint32_t> ci;
  thread_local std::vector<float> cv;
  if (n >= kSampleMinN) {
    // Sample rank for a threshold a little below the k-th largest key: the expected count
    // above it padded by four standard deviations and a constant, so that the take below
    // almost always holds at least k elements (else: the two-pass path, same result).
    const std::uint64_t ns = n / kSampleStride > kSamples ? n / kSampleStride : kSamples;
    const std::uint64_t stride = n / ns;
    const double expect = static_cast<double>(k) / static_cast<double>(stride);
    const auto rank = static_cast<std::uint64_t>(expect + 4.0 * std::sqrt(expect) + 16.0);
    if (rank < ns / 4) {  // else the candidates are a large part of the input
      std::vector<float> samples(ns);
      const UView<float> sv(samples.data(), ns);
      Kokkos::parallel_for(
          "gradcomp::kk::topk_sample", Range<>(0, ns),
          KOKKOS_LAMBDA(const std::uint64_t i) { sv(i) = in(i * stride); });
      const std::uint32_t t = kth_key(UView<const float>(samples.data(), ns), rank, false).key;
      const std::uint64_t cap = 2 * rank * stride + kChunk;
      if (ci.size() < cap) {
        ci.resize(cap);
        cv.resize(cap);
      }
      const Taken r = take_keys(in, t, kNanKey, check, UView<std::uint32_t>(ci.data(), cap),
                                UView<float>(cv.data(), cap));
      if (r.first_bad != kNone) return r.first_bad;
      if (r.count >= k && r.count <= cap) {
        // Every element with key >= t is here, in index order, and there are >= k of them.
        const UView<const float> cand(cv.data(), r.count);
        emit_topk(cand, kth_key(cand, k, false), idx, val,
                  UView<const std::uint32_t>(ci.data(), r.count));
        return kNone;
      }
      check = false;  // the take checked every element
    }
  }
  std::uint32_t bad = 0xFFFFFFFFu;
  const std::vector<std::uint32_t> h1 = histogram(in, 15, 16, 32, 0, check, bad);
  if (bad != 0xFFFFFFFFu) return bad;
  std::uint32_t b1 = 0, b2 = 0;
  std::uint64_t above1 = 0, above2 = 0;
  find_bin(h1, k, b1, above1);
  // Pass 2: compact every element whose high bits are >= b1, in index order.
  const std::uint64_t cap = above1 + h1[b1];
  if (ci.size() < cap) {
    ci.resize(cap);
    cv.resize(cap);
  }
  take_keys(in, b1 << 16, kNanKey, false, UView<std::uint32_t>(ci.data(), cap),
            UView<float>(cv.data(), cap));
  const UView<const float> cand(cv.data(), cap);
  const std::vector<std::uint32_t> h2 = histogram(cand, 16, 0, 16, b1, false, bad);
  find_bin(h2, k - above1, b2, above2);
  KthKey t;
  t.key = (b1 << 16) | b2;
  t.greater = above1 + above2;
  t.ties_needed = k - t.greater;
  emit_topk(cand, t, idx, val, UView<const std::uint32_t>(ci.data(), cap));
  return kNone;
}

void apply_sparse(UView<const std::uint32_t> idx, UView<const float> val, bool accumulate,
                  float alpha, UView<float> out) {
  const std::uint64_t count = idx.extent(0);
  const std::uint64_t n = out.extent(0);
  if (!accumulate) {
    Kokkos::deep_copy(out, 0.0f);
    Kokkos::parallel_for(
        "gradcomp::kk::sparse_scatter", Range<>(0, count),
        KOKKOS_LAMBDA(const std::uint64_t i) { out(idx(i)) = val(i); });
    return;
  }
  const double a = static_cast<double>(alpha);
  // Item i handles index idx(i) and the gap of unselected entries before it; item `count` the
  // tail. Indices are strictly increasing (validated), so items touch disjoint entries.
  Kokkos::parallel_for(
      "gradcomp::kk::sparse_accumulate", Range<>(0, count + 1),
      KOKKOS_LAMBDA(const std::uint64_t i) {
        const std::uint64_t begin = i == 0 ? 0 : std::uint64_t{idx(i - 1)} + 1;
        const std::uint64_t end = i == count ? n : std::uint64_t{idx(i)};
        const double zero = a * 0.0;
        for (std::uint64_t j = begin; j < end; ++j)
          out(j) = static_cast<float>(static_cast<double>(out(j)) + zero);
        if (i < count)
          out(end) =
              static_cast<float>(static_cast<double>(out(end)) + a * static_cast<double>(val(i)));
      });
}

void apply_dense(UView<const float> val, bool accumulate, float alpha, UView<float> out) {
  const double a = static_cast<double>(alpha);
  if (!accumulate) {
    Kokkos::parallel_for(
        "gradcomp::kk::dense_copy_out", Range<>(0, out.extent(0)),
        KOKKOS_LAMBDA(const std::uint64_t j) { out(j) = val(j); });
    return;
  }
  Kokkos::parallel_for(
      "gradcomp::kk::dense_accumulate", Range<>(0, out.extent(0)),
      KOKKOS_LAMBDA(const std::uint64_t j) {
        out(j) = static_cast<float>(static_cast<double>(out(j)) + a * static_cast<double>(val(j)));
      });
}

std::uint64_t first_bad_index(UView<const std::uint32_t> idx, std::uint64_t n) {
  std::uint64_t bad = kNone;
  Kokkos::parallel_reduce(
      "gradcomp::kk::check_indices", Range<>(0, idx.extent(0)),
      KOKKOS_LAMBDA(const std::uint64_t i, std::uint64_t& m) {
        const std::uint32_t v = idx(i);
        const bool ok = v < n && (i == 0 || v > idx(i - 1));
        if (!ok && i < m) m = i;
      },
      Kokkos::Min<std::uint64_t>(bad));
  return bad;
}

Status describe_bad_index(const std::uint32_t* idx, std::uint64_t i, std::uint64_t n) {
  GRADCOMP_CHECK_PAYLOAD(idx[i] < n, "index[", i, "] = ", idx[i], " is out of range (n = ", n, ")");
  return make_status(StatusCode::kCorruptPayload, "indices are not strictly increasing at [", i,
                     "]: ", idx[i - 1], " then ", idx[i]);
}

Status check_dense(const CompressorDesc& desc, const WireHeader& header,
                   Span<const std::uint8_t> body) {
  GRADCOMP_CHECK_PAYLOAD(header.count == header.n, "dense payload count ", header.count, " != n ",
                         header.n);
  GRADCOMP_CHECK_PAYLOAD(body.size() == 4 * header.n, "dense body is ", body.size(),
                         " bytes, expected ", 4 * header.n);
  if (desc.nonfinite == NonfinitePolicy::kError) {
    const std::uint64_t bad = first_nonfinite(f32_view(body.data(), header.n));
    GRADCOMP_CHECK_PAYLOAD(bad == kNone, "dense value[", bad,
                           "] = ", load_f32(body.data() + 4 * (bad == kNone ? 0 : bad)),
                           " is not finite (nonfinite=error)");
  }
  return Status::success();
}

Status check_dense_flag(const WireHeader& header, bool dense, std::uint64_t k, std::uint64_t n) {
  GRADCOMP_CHECK_PAYLOAD(((header.flags & kFlagDense) != 0) == dense, "dense flag is ",
                         (header.flags & kFlagDense) ? "set" : "clear", " but k = ", k,
                         " and n = ", n, dense ? " require it" : " forbid it");
  return Status::success();
}

Status decode_if_dense(const CompressorDesc& desc, const WireHeader& header,
                       Span<const std::uint8_t> body, std::uint64_t k, bool dense, bool accumulate,
                       float alpha, Span<float> out, bool& done) {
  done = false;
  GRADCOMP_TRY(check_dense_flag(header, dense, k, desc.n));
  if (!dense) return Status::success();
  GRADCOMP_TRY(check_dense(desc, header, body));
  apply_dense(f32_view(body.data(), desc.n), accumulate, alpha, view_of(out));
  done = true;
  return Status::success();
}

}  // namespace gradcomp::kk::sel
