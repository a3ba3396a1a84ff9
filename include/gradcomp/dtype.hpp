// Data-type tokens (f32 f16 bf16 f64 s8 u8 s32 u32) and the fp16 / bf16 storage conversions.
//
// Conversions round to nearest, ties to even (IEEE default), keep NaN a (quiet) NaN and
// saturate to +-Inf on overflow. They are plain integer code so the reference, Kokkos and
// CUDA produce the same bits.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "gradcomp/host_device.hpp"

namespace gradcomp {

enum class DType : std::uint8_t { kF32, kF16, kBF16, kF64, kS8, kU8, kS32, kU32 };

inline const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kF64: return "f64";
    case DType::kS8: return "s8";
    case DType::kU8: return "u8";
    case DType::kS32: return "s32";
    case DType::kU32: return "u32";
  }
  return "?";
}

inline std::size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kF64: return 8;
    case DType::kS8: return 1;
    case DType::kU8: return 1;
    case DType::kS32: return 4;
    case DType::kU32: return 4;
  }
  return 0;
}

// Returns false if `token` names no dtype.
inline bool dtype_parse(std::string_view token, DType* out) {
  static constexpr DType kAll[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64,
                                   DType::kS8,  DType::kU8,  DType::kS32,  DType::kU32};
  for (DType dt : kAll) {
    if (token == dtype_name(dt)) {
      *out = dt;
      return true;
    }
  }
  return false;
}

GRADCOMP_HOST_DEVICE inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

GRADCOMP_HOST_DEVICE inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float -> IEEE binary16 bits.
GRADCOMP_HOST_DEVICE inline std::uint16_t float_to_f16_bits(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);   // NaN
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520: Inf
  if (ax >= 0x38800000u) {  // result is a normal half (|f| >= 2^-14)
    const std::uint32_t odd = (ax >> 13) & 1u;
    // Re-bias the exponent (127 -> 15) and add the round-to-nearest-even increment.
    const std::uint32_t r = ax - 0x38000000u + 0x0fffu + odd;
    return static_cast<std::uint16_t>(sign | (r >> 13));
  }
  if (ax <= 0x33000000u) return static_cast<std::uint16_t>(sign);  // <= 2^-25: rounds to 0
  // Half subnormal: m * 2^-24 with m = mantissa >> (126 - exponent), rounded to even.
  const std::uint32_t e = ax >> 23;
  const std::uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - e;  // 14..24
  std::uint32_t m = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (m & 1u))) ++m;  // m == 1024 is the smallest normal: ok
  return static_cast<std::uint16_t>(sign | m);
}

GRADCOMP_HOST_DEVICE inline float f16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  const std::uint32_t m = h & 0x3ffu;
  if (e == 0) {
    const float mag = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
    return bits_float(float_bits(mag) | sign);
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

// float -> bfloat16 bits.
GRADCOMP_HOST_DEVICE inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t odd = (x >> 16) & 1u;
  return static_cast<std::uint16_t>((x + 0x7fffu + odd) >> 16);
}

GRADCOMP_HOST_DEVICE inline float bf16_bits_to_float(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

}  // namespace gradcomp
