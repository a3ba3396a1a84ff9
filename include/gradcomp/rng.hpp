// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, "Random123").
//
// Every random draw in gradcomp is a pure function of
//     (global seed, purpose, step, tensor id, rank or kShared, element index, draw index)
// so the reference, the Kokkos kernels and the CUDA kernels draw identical numbers whatever
// the thread mapping, and ranks that must agree (shared randomness) agree without talking.
//
// Keying (the contract; see docs/rng.md):
//   stream key  = first two words of philox(ctr = {purpose, step, tensor_id, rank},
//                                           key = {seed_lo, seed_hi})
//   draw        = philox(ctr = {elem_lo, elem_hi, draw_index, 0}, key = stream key)
// Each draw yields four 32-bit words.
#pragma once

#include <cmath>
#include <cstdint>

#include "gradcomp/host_device.hpp"

namespace gradcomp {

struct Philox4x32 {
  std::uint32_t v[4];
};
struct PhiloxKey {
  std::uint32_t k[2];
};

namespace detail {
GRADCOMP_HOST_DEVICE GRADCOMP_FORCEINLINE void mulhilo32(std::uint32_t a, std::uint32_t b,
                                                         std::uint32_t* hi, std::uint32_t* lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  *hi = static_cast<std::uint32_t>(p >> 32);
  *lo = static_cast<std::uint32_t>(p);
}
}  // namespace detail

// The Philox4x32 bijection with 10 rounds, as specified by Random123.
GRADCOMP_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 ctr, PhiloxKey key) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key.k[0] += kWeyl0;
      key.k[1] += kWeyl1;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    detail::mulhilo32(kMul0, ctr.v[0], &hi0, &lo0);
    detail::mulhilo32(kMul1, ctr.v[2], &hi1, &lo1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ key.k[0], lo1, hi0 ^ ctr.v[3] ^ key.k[1], lo0}};
  }
  return ctr;
}

// What a random stream is used for. Part of the key: never renumber, only append.
enum class RngPurpose : std::uint32_t {
  kQsgdRounding = 1,
  kTernGradRounding = 2,
  kRandKIndices = 3,
  kDgcSampling = 4,
  kGrbsBlocks = 5,
  kRbgsBlocks = 6,
  kPowerSgdInit = 7,
  kTestData = 100,  // fills in tests and the validation driver
};

// Rank value that selects randomness shared by every rank.
constexpr std::uint32_t kSharedRank = 0xFFFFFFFFu;

// One stream: (seed, purpose, step, tensor, rank). Cheap to copy; draws are independent.
class RngStream {
 public:
  GRADCOMP_HOST_DEVICE RngStream() : key_{{0, 0}} {}
  GRADCOMP_HOST_DEVICE RngStream(std::uint64_t seed, RngPurpose purpose, std::uint32_t step,
                                 std::uint32_t tensor_id, std::uint32_t rank) {
    const Philox4x32 c{{static_cast<std::uint32_t>(purpose), step, tensor_id, rank}};
    const PhiloxKey k{{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}};
    const Philox4x32 r = philox4x32_10(c, k);
    key_ = PhiloxKey{{r.v[0], r.v[1]}};
  }

  // Four raw 32-bit words for (element, draw).
  GRADCOMP_HOST_DEVICE Philox4x32 words(std::uint64_t element, std::uint32_t draw = 0) const {
    const Philox4x32 c{
        {static_cast<std::uint32_t>(element), static_cast<std::uint32_t>(element >> 32), draw, 0u}};
    return philox4x32_10(c, key_);
  }

  // Uniform float in [0, 1) with 24 random bits (exactly representable): word 0 of the draw.
  GRADCOMP_HOST_DEVICE float uniform_float(std::uint64_t element, std::uint32_t draw = 0) const {
    return to_unit_float(words(element, draw).v[0]);
  }

  // Uniform double in [0, 1) with 53 random bits from words 0 and 1.
  GRADCOMP_HOST_DEVICE double uniform_double(std::uint64_t element, std::uint32_t draw = 0) const {
    const Philox4x32 w = words(element, draw);
    return to_unit_double(w.v[0], w.v[1]);
  }

  // Uniform integer in [0, bound) from 64 random bits (words 0, 1) by multiply-high; the
  // non-uniformity is at most bound / 2^64. bound must be > 0.
  GRADCOMP_HOST_DEVICE std::uint64_t uniform_below(std::uint64_t bound, std::uint64_t element,
                                                   std::uint32_t draw = 0) const {
    const Philox4x32 w = words(element, draw);
    const std::uint64_t x = (static_cast<std::uint64_t>(w.v[1]) << 32) | w.v[0];
    return mulhi64(x, bound);
  }

  // Standard normal by Box-Muller from words 0..3 (u1 in (0, 1], u2 in [0, 1)), in double.
  GRADCOMP_HOST_DEVICE double normal(std::uint64_t element, std::uint32_t draw = 0) const {
    const Philox4x32 w = words(element, draw);
    const double u1 = 1.0 - to_unit_double(w.v[0], w.v[1]);  // (0, 1]: log is finite
    const double u2 = to_unit_double(w.v[2], w.v[3]);
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
  }

  GRADCOMP_HOST_DEVICE static float to_unit_float(std::uint32_t w) {
    return static_cast<float>(w >> 8) * 5.9604644775390625e-8f;  // * 2^-24
  }
  GRADCOMP_HOST_DEVICE static double to_unit_double(std::uint32_t lo, std::uint32_t hi) {
    const std::uint64_t x = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
    return static_cast<double>(x) * 1.1102230246251565404236316680908203125e-16;  // * 2^-53
  }
  GRADCOMP_HOST_DEVICE static std::uint64_t mulhi64(std::uint64_t a, std::uint64_t b) {
    const std::uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
    const std::uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
    const std::uint64_t lo_lo = a_lo * b_lo;
    const std::uint64_t hi_lo = a_hi * b_lo;
    const std::uint64_t lo_hi = a_lo * b_hi;
    const std::uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + lo_hi;
    return a_hi * b_hi + (hi_lo >> 32) + (cross >> 32);
  }

  GRADCOMP_HOST_DEVICE PhiloxKey key() const { return key_; }

 private:
  PhiloxKey key_;
};

}  // namespace gradcomp
