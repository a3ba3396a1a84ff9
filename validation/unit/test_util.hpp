// Helpers shared by the reference unit tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "gradcomp/compressor.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/rng.hpp"
#include "gradcomp/wire_format.hpp"

namespace gradcomp::test {

// The sizes every compressor is exercised at (issue #2).
inline const std::vector<std::uint64_t>& edge_sizes() {
  static const std::vector<std::uint64_t> sizes = {0, 1, 31, 32, 33, 1023, 4097, (1u << 20) + 3};
  return sizes;
}

// Deterministic N(0, 1) data: a pure function of (seed, element).
inline std::vector<float> normal_data(std::uint64_t n, std::uint64_t seed = 1) {
  RngStream s(seed, RngPurpose::kTestData, 0, 0, 0);
  std::vector<float> v(n);
  for (std::uint64_t i = 0; i < n; ++i) v[i] = static_cast<float>(s.normal(i));
  return v;
}

inline CompressorDesc desc_or_die(const std::string& text) {
  auto r = parse_compressor(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().to_string();
  return r.ok() ? r.value() : CompressorDesc{};
}

// Compress then decompress; fails the test on any error.
inline std::vector<float> roundtrip(const CompressorDesc& d, const std::vector<float>& in,
                                    const ref::CompressContext& ctx = {},
                                    std::vector<std::uint8_t>* payload_out = nullptr) {
  std::vector<std::uint8_t> payload;
  Status s = ref::compress(d, ctx, in, payload);
  EXPECT_TRUE(s.ok()) << d.to_string() << ": " << s.to_string();
  std::vector<float> out(d.n, std::nanf(""));
  if (s.ok()) {
    s = ref::decompress(d, ctx, payload, Span<float>(out));
    EXPECT_TRUE(s.ok()) << d.to_string() << ": " << s.to_string();
  }
  if (payload_out) *payload_out = payload;
  return out;
}

inline double sum_sq(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return s;
}

// Every truncation of a valid payload must be rejected with kCorruptPayload (never a crash).
inline void expect_truncations_rejected(const CompressorDesc& d,
                                        const std::vector<std::uint8_t>& payload,
                                        const ref::CompressContext& ctx = {}) {
  std::vector<float> out(d.n, 0.0f);
  // All short lengths near the ends, and a sample in the middle, keep this fast for big n.
  for (std::size_t len = 0; len < payload.size(); ++len) {
    if (len > 64 && len + 64 < payload.size() && len % 997 != 0) continue;
    Status s =
        ref::decompress(d, ctx, Span<const std::uint8_t>(payload.data(), len), Span<float>(out));
    EXPECT_EQ(s.code(), StatusCode::kCorruptPayload)
        << d.to_string() << " truncated to " << len << " of " << payload.size() << " bytes";
  }
  std::vector<std::uint8_t> longer = payload;
  longer.push_back(0);
  EXPECT_EQ(ref::decompress(d, ctx, longer, Span<float>(out)).code(), StatusCode::kCorruptPayload)
      << d.to_string() << " with a trailing byte";
}

// ---- expected payload bytes ---------------------------------------------------------------------

// The 32 header bytes the wire format prescribes (docs/wire-format.md), written byte by byte in
// little endian, independent of write_header(): "GCMP", version 1, kind, flags, n (u64),
// step (u32), tensor_id (u32), count (u32), body_bytes (u32). `kind` is the wire byte, so a known
// answer can spell it as the spec does.
inline std::vector<std::uint8_t> expected_header_at(std::uint8_t kind, std::uint64_t n,
                                                    std::uint32_t step, std::uint32_t tensor_id,
                                                    std::uint32_t count, std::uint32_t body_bytes,
                                                    std::uint8_t flags = 0) {
  std::vector<std::uint8_t> h = {'G', 'C', 'M', 'P', 1, 0, kind, flags};
  auto le = [&h](std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) h.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  le(n, 8);
  le(step, 4);
  le(tensor_id, 4);
  le(count, 4);
  le(body_bytes, 4);
  return h;
}

inline std::vector<std::uint8_t> expected_header_at(CompressorKind kind, std::uint64_t n,
                                                    std::uint32_t step, std::uint32_t tensor_id,
                                                    std::uint32_t count, std::uint32_t body_bytes,
                                                    std::uint8_t flags = 0) {
  return expected_header_at(static_cast<std::uint8_t>(kind), n, step, tensor_id, count, body_bytes,
                            flags);
}

// expected_header_at() for step 0 and tensor 0 (a default CompressContext).
inline std::vector<std::uint8_t> expected_header(std::uint8_t kind, std::uint64_t n,
                                                 std::uint32_t count, std::uint32_t body_bytes,
                                                 std::uint8_t flags = 0) {
  return expected_header_at(kind, n, 0, 0, count, body_bytes, flags);
}

inline std::vector<std::uint8_t> expected_header(CompressorKind kind, std::uint64_t n,
                                                 std::uint32_t count, std::uint32_t body_bytes,
                                                 std::uint8_t flags = 0) {
  return expected_header_at(kind, n, 0, 0, count, body_bytes, flags);
}

// Appends raw bytes, a little-endian u32 or the bits of an f32 to an expected payload.
inline void append_bytes(std::vector<std::uint8_t>& v, std::initializer_list<std::uint8_t> bytes) {
  v.insert(v.end(), bytes);
}

inline void append_u32(std::vector<std::uint8_t>& v, std::uint32_t u) {
  for (int i = 0; i < 4; ++i) v.push_back(static_cast<std::uint8_t>(u >> (8 * i)));
}

inline void append_f32(std::vector<std::uint8_t>& v, float f) { append_u32(v, float_bits(f)); }

// ---- compressing, decoding and reading payloads -------------------------------------------------

// A context with the given keys, in the order of the RNG streams' (step, tensor_id, rank).
inline ref::CompressContext context_at(std::uint32_t step, std::uint32_t tensor_id,
                                       std::uint32_t rank) {
  ref::CompressContext ctx;
  ctx.step = step;
  ctx.tensor_id = tensor_id;
  ctx.rank = rank;
  return ctx;
}

// A context at `step` (and `rank`), tensor 0.
inline ref::CompressContext at_step(std::uint32_t step, std::uint32_t rank = 0) {
  return context_at(step, 0, rank);
}

// The payload of `in`; fails the test (and returns what compress left) on any error.
inline std::vector<std::uint8_t> compress_ok(const CompressorDesc& d, const std::vector<float>& in,
                                             const ref::CompressContext& ctx = {}) {
  std::vector<std::uint8_t> p;
  Status s = ref::compress(d, ctx, in, p);
  EXPECT_TRUE(s.ok()) << d.to_string() << ": " << s.to_string();
  return p;
}

// Decompresses `p` into a fresh zero-filled buffer of d.n elements, copied to *out when given;
// returns the status (for tests that expect a failure).
inline Status decode(const CompressorDesc& d, const std::vector<std::uint8_t>& p,
                     std::vector<float>* out = nullptr, const ref::CompressContext& ctx = {}) {
  std::vector<float> o(d.n, 0.0f);
  Status s = ref::decompress(d, ctx, p, Span<float>(o));
  if (out) *out = o;
  return s;
}

// Header fields of a payload, or a sentinel when the payload is too short to hold a header (a
// failed compress must fail the test, not crash the binary).
inline std::uint32_t count_of(const std::vector<std::uint8_t>& p) {
  return p.size() >= kHeaderBytes ? load_u32(p.data() + 24) : 0xFFFFFFFFu;
}
inline int flags_of(const std::vector<std::uint8_t>& p) {
  return p.size() >= kHeaderBytes ? p[7] : -1;
}

// The body of a payload (everything after the header).
inline std::vector<std::uint8_t> body_of(const std::vector<std::uint8_t>& p) {
  return std::vector<std::uint8_t>(p.begin() + kHeaderBytes, p.end());
}

// `p`'s header with a new count, flags and body; the header's body_bytes follows the body.
inline std::vector<std::uint8_t> rebuild(const std::vector<std::uint8_t>& p, std::uint32_t count,
                                         std::uint8_t flags,
                                         const std::vector<std::uint8_t>& body) {
  std::vector<std::uint8_t> q(kHeaderBytes + body.size(), 0);
  for (std::size_t i = 0; i < kHeaderBytes; ++i) q[i] = p[i];
  for (std::size_t i = 0; i < body.size(); ++i) q[kHeaderBytes + i] = body[i];
  q[7] = flags;
  store_u32(q.data() + 24, count);
  store_u32(q.data() + 28, static_cast<std::uint32_t>(body.size()));
  return q;
}

// ---- properties shared by several compressors ------------------------------------------------

// The oracle against a formula written from the spec, at one size: roundtrip(d, v, ctx) of
// v = normal_data(d.n, data_seed) equals formula(v) exactly, and for 0 < n <= 4097 every
// truncation of the payload is rejected.
inline void expect_matches_formula(
    const CompressorDesc& d, const ref::CompressContext& ctx, std::uint64_t data_seed,
    const std::function<std::vector<float>(const std::vector<float>&)>& formula) {
  const auto v = normal_data(d.n, data_seed);
  std::vector<std::uint8_t> p;
  EXPECT_EQ(roundtrip(d, v, ctx, &p), formula(v)) << d.to_string();
  if (d.n > 0 && d.n <= 4097) expect_truncations_rejected(d, p, ctx);
}

// A linear compressor with shared randomness can be allreduced: at `step` the payloads of a, b
// and a + b have the same header and body(a) + body(b) == body(a + b) value by value, and the
// decoded outputs add the same way.
inline void expect_linear_payloads(const CompressorDesc& d, const std::vector<float>& a,
                                   const std::vector<float>& b, std::uint32_t step) {
  std::vector<float> sum(d.n);
  for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = a[i] + b[i];
  const auto ctx = at_step(step);
  const auto pa = compress_ok(d, a, ctx), pb = compress_ok(d, b, ctx);
  const auto ps = compress_ok(d, sum, ctx);
  ASSERT_GE(pa.size(), kHeaderBytes);
  ASSERT_EQ(pa.size(), ps.size());
  ASSERT_EQ(pb.size(), ps.size());
  EXPECT_TRUE(std::equal(pa.begin(), pa.begin() + kHeaderBytes, ps.begin()));  // same header
  for (std::size_t j = kHeaderBytes; j + 4 <= pa.size(); j += 4)
    EXPECT_EQ(load_f32(pa.data() + j) + load_f32(pb.data() + j), load_f32(ps.data() + j));
  const auto oa = roundtrip(d, a, ctx), ob = roundtrip(d, b, ctx), os = roundtrip(d, sum, ctx);
  for (std::size_t i = 0; i < d.n; ++i) EXPECT_EQ(oa[i] + ob[i], os[i]);
}

// ---- corrupted payloads -------------------------------------------------------------------------

// Decoding `p` must fail with kCorruptPayload, with a message containing `message_part` (an
// empty one matches any message), and must leave the output untouched. `what` names the
// corruption in failure messages.
inline void expect_corrupt(const CompressorDesc& d, const std::vector<std::uint8_t>& p,
                           const std::string& message_part, const ref::CompressContext& ctx = {},
                           const std::string& what = {}) {
  std::vector<float> out(d.n, 7.0f);
  Status s = ref::decompress(d, ctx, p, Span<float>(out));
  EXPECT_EQ(s.code(), StatusCode::kCorruptPayload)
      << what << " " << d.to_string() << ": " << s.to_string();
  EXPECT_NE(s.message().find(message_part), std::string::npos)
      << what << ": expected '" << message_part << "' in: " << s.message();
  for (float x : out) ASSERT_EQ(x, 7.0f) << what << ": output must be untouched on error";
}

// The header-level corruptions of a valid payload `good` of a fixed-size compressor without a
// dense form: a wrong count, the dense flag, and a body 4 zero bytes longer than the descriptor's
// (header body_bytes updated to match); then every truncation (expect_truncations_rejected).
inline void expect_header_corruptions_rejected(const CompressorDesc& d,
                                               const std::vector<std::uint8_t>& good,
                                               std::uint32_t wrong_count,
                                               const ref::CompressContext& ctx = {}) {
  auto p = good;
  store_u32(p.data() + 24, wrong_count);
  expect_corrupt(d, p, "count", ctx, "count");
  p = good;
  p[7] = kFlagDense;
  expect_corrupt(d, p, "flags", ctx, "dense flag");
  p = good;
  p.insert(p.end(), {0, 0, 0, 0});
  store_u32(p.data() + 28, static_cast<std::uint32_t>(p.size() - kHeaderBytes));
  expect_corrupt(d, p, "body", ctx, "long body");
  expect_truncations_rejected(d, good, ctx);
}

// ---- randomness and statistics ------------------------------------------------------------------

// The first seed < 100000 whose stream (purpose, step, tensor, rank) satisfies `ok` (a known
// answer that needs particular uniforms); fails the test when there is none.
inline std::uint64_t find_seed(RngPurpose purpose, std::uint32_t step, std::uint32_t tensor,
                               std::uint32_t rank,
                               const std::function<bool(const RngStream&)>& ok) {
  for (std::uint64_t seed = 0; seed < 100000; ++seed) {
    if (ok(RngStream(seed, purpose, step, tensor, rank))) return seed;
  }
  ADD_FAILURE() << "no seed found";
  return 0;
}

// z such that a two-sided normal test at family-wise level alpha over `tests` tests rejects
// |Z| > z (Bonferroni): P(|Z| > z) = erfc(z / sqrt 2) = alpha / tests, by bisection.
inline double bonferroni_z(double alpha, double tests) {
  const double target = alpha / tests;
  double lo = 0.0, hi = 40.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (std::erfc(mid / std::sqrt(2.0)) > target ? lo : hi) = mid;
  }
  return hi;
}

// Largest |z| of observed counts against Binomial(trials, p) per cell.
inline double max_binomial_z(const std::vector<std::uint64_t>& counts, double trials, double p) {
  const double mean = trials * p, sd = std::sqrt(trials * p * (1.0 - p));
  double worst = 0.0;
  for (std::uint64_t c : counts) worst = std::max(worst, std::fabs((double(c) - mean) / sd));
  return worst;
}

// Per-element sums of draw(step) and of its squares over steps 0 .. trials-1 (Monte Carlo).
struct MonteCarloSums {
  std::vector<double> sum, sum_sq;
  int trials = 0;
};

inline MonteCarloSums monte_carlo_sums(
    std::size_t n, int trials, const std::function<std::vector<float>(std::uint32_t)>& draw) {
  MonteCarloSums m{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), trials};
  for (int t = 0; t < trials; ++t) {
    const auto q = draw(static_cast<std::uint32_t>(t));
    for (std::size_t i = 0; i < n; ++i) {
      m.sum[i] += q[i];
      m.sum_sq[i] += double(q[i]) * q[i];
    }
  }
  return m;
}

// Largest z-score of the sample mean against `mean` with per-element variance `var`. Elements
// with zero variance must match to 1e-6 relative (reported as +inf otherwise).
inline double max_mean_z(const MonteCarloSums& m, const std::vector<double>& mean,
                         const std::vector<double>& var) {
  double worst = 0;
  for (std::size_t i = 0; i < mean.size(); ++i) {
    const double diff = std::fabs(m.sum[i] / m.trials - mean[i]);
    if (var[i] <= 0) {
      if (diff > 1e-6 * std::fabs(mean[i])) worst = std::numeric_limits<double>::infinity();
      continue;
    }
    worst = std::max(worst, diff / std::sqrt(var[i] / m.trials));
  }
  return worst;
}

}  // namespace gradcomp::test
