// Helpers shared by the reference unit tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
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

}  // namespace gradcomp::test
