// Input fills (style.md B4 "Fill rules"). Each element is a pure function of (seed, data kind,
// rank, element index), hashed with splitmix64 rather than the library's Philox so the inputs do
// not share code with what is being tested.
#include <cmath>
#include <limits>

#include "validate.hpp"

namespace gradcomp::validation {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::uint64_t element_hash(std::uint64_t seed, DataKind kind, std::uint32_t rank, std::uint64_t i) {
  std::uint64_t h = splitmix64(seed ^ 0x6772616463ull);
  h = splitmix64(h ^ (static_cast<std::uint64_t>(kind) << 32) ^ rank);
  return splitmix64(h ^ i);
}

double unit(std::uint64_t bits) {  // [0, 1) from 53 bits
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

float normal(std::uint64_t h) {
  const double u1 = 1.0 - unit(h);  // (0, 1]
  const double u2 = unit(splitmix64(h));
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace

float fill_value(Fill f, std::uint64_t seed, DataKind kind, std::uint32_t rank, std::uint64_t i) {
  const std::uint64_t h = element_hash(seed, kind, rank, i);
  const float sign = (h >> 63) ? -1.0f : 1.0f;
  switch (f) {
    case Fill::kExact: {
      // Quarters in [-1.75, 1.75]: squares are multiples of 1/16, so every sum of up to 2^30
      // of them is exact in double and any sum of fewer than 2^20 is exact in float; the values
      // are exact in fp16 and bf16 too. One in 15 is zero.
      const auto q = static_cast<int>(h % 15u) - 7;
      return static_cast<float>(q) * 0.25f;
    }
    case Fill::kReal: return normal(h);
    case Fill::kEdge: {
      // Interleaved corner values; ties in |x| are frequent on purpose (topk's tie rule).
      const std::uint64_t r = (h >> 8) % 1000u;
      switch (h % 11u) {
        case 0: return 0.0f;
        case 1: return -0.0f;
        case 2: return sign * std::ldexp(1.0f + static_cast<float>(r), -149);  // denormal
        case 3: return sign * std::numeric_limits<float>::min();               // min normal
        case 4:
        case 5:
          return sign * 1.5f;  // ties in |x|
        // 1024*l/4: exactly on QSGD levels (norm=max, s = 1, 2, 4) of buckets whose max is 1024.
        case 6: return sign * 256.0f * static_cast<float>(r % 5u);
        case 7: return sign * 1.0f;
        case 8: return sign * 1024.0f;  // a large value
        default: return normal(h);
      }
    }
  }
  return 0.0f;
}

void fill(Fill f, std::uint64_t seed, DataKind kind, std::uint32_t rank, Span<float> out) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = fill_value(f, seed, kind, rank, i);
}

}  // namespace gradcomp::validation
