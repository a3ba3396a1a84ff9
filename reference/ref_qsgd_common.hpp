// QSGD stochastic quantization shared by qsgd (ref_qsgd.cpp) and the Qsparse compositions
// qsgd_topk / qsgd_randk (ref_qsparse.cpp). Internal to the reference oracles.
//
// One element v with bucket norm N (an f32 value) and s levels (algorithms.md §4.3):
//   r = s * |v| / N           (double: s, |v| and N are exact in double)
//   l = floor(r), p = r - l
//   level = l + [u < p]       (u = the element's f32 uniform, compared in double)
//   code  = sign | level << 1 (1 + L bits, L = qsgd_level_bits(s); sign = 1 iff v < 0 and
//                              level > 0, so a zero level always has sign 0)
//   value = N * (+-level) / s * factor  (double, rounded once to f32; factor = 1, or
//                              1/(1 + beta) for the scaled Qsparse compositions)
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "ref_internal.hpp"

namespace gradcomp::ref::detail::qsgd {

// The bucket norm of `v`: sqrt(sum v^2) (l2) or max |v| (max), accumulated in double and then
// rounded to f32. The f32 value is what is sent and what the quantizer divides by, so the
// decoder reproduces the encoder exactly. A NaN element (nonfinite=propagate only) makes the
// norm NaN so that it is never silently dropped.
float bucket_norm(Span<const float> v, QsgdNorm norm);

// Quantizes one element to its (1 + L)-bit code; `u` in [0, 1) is its rounding uniform.
// norm == 0 gives code 0 without dividing. A NaN ratio (non-finite v or norm, only under
// nonfinite=propagate) gives level s, so the decoded value is non-finite too.
std::uint32_t quantize(float v, float norm, std::uint32_t levels, float u);

// Decoded value of a code (level <= s, already checked). factor = 1 for plain QSGD.
float dequantize(std::uint32_t code, float norm, std::uint32_t levels, double factor = 1.0);

// The f32 written for a norm / scale / scaler: a NaN (only under nonfinite=propagate) is
// written as the canonical quiet NaN 0x7FC00000, so the bytes do not depend on which NaN the
// arithmetic produced (its sign and payload differ between CPUs and GPUs).
inline float wire_scale(float x) {
  return std::isnan(x) ? std::numeric_limits<float>::quiet_NaN() : x;
}

// Checks a norm or scale read from a payload: sign bit clear (rejects negative values and the
// non-canonical -0 and -NaN); finite unless nonfinite=propagate (then +NaN / +Inf pass, so a
// non-finite input stays visible).
inline Status check_norm(float norm, NonfinitePolicy policy, const char* what,
                         std::uint64_t index) {
  GRADCOMP_CHECK_PAYLOAD(!std::signbit(norm), what, "[", index, "] = ", norm,
                         " is negative (sign bit set)");
  GRADCOMP_CHECK_PAYLOAD(policy == NonfinitePolicy::kPropagate || std::isfinite(norm), what, "[",
                         index, "] = ", norm, " is not finite");
  return Status::success();
}

// Reads the next `count` codes of 1 + L bits from `reader` and checks each: level <= s, a zero
// level has sign 0, and a zero norm has only zero levels (the caller checks the body length and
// the padding). `first` numbers the first code in messages. Decoded values (see dequantize) are
// written through emit(i, value), i = 0 .. count - 1.
template <class Emit>
Status decode_codes(BitReader& reader, std::uint64_t first, std::uint64_t count, float norm,
                    std::uint32_t levels, double factor, Emit emit) {
  const std::uint32_t bits = 1 + qsgd_level_bits(levels);
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint32_t code = reader.get(bits);
    const std::uint32_t sign = code & 1u;
    const std::uint32_t level = code >> 1;
    GRADCOMP_CHECK_PAYLOAD(level <= levels, "code[", first + i, "] has level ", level,
                           " > levels s = ", levels);
    GRADCOMP_CHECK_PAYLOAD(level != 0 || sign == 0, "code[", first + i,
                           "] has level 0 with the sign bit set (non-canonical -0)");
    GRADCOMP_CHECK_PAYLOAD(level == 0 || norm != 0.0f, "code[", first + i, "] has level ", level,
                           " in a bucket whose norm is 0");
    emit(i, dequantize(code, norm, levels, factor));
  }
  return Status::success();
}

}  // namespace gradcomp::ref::detail::qsgd
