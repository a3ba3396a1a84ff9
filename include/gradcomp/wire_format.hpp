// The wire format: the byte contract every backend must produce exactly (docs/wire-format.md).
//
// A payload is a 32-byte header followed by a compressor-specific body. All multi-byte fields
// are little-endian; floats are IEEE binary32 bit patterns. Bit fields are packed LSB-first into
// 32-bit little-endian words (element i of a 1-bit stream is bit i % 32 of word i / 32); the
// unused bits of the last word are zero.
//
// Header layout (offsets in bytes):
//    0  u32  magic      0x504D4347 ("GCMP" in memory order)
//    4  u16  version    kWireVersion
//    6  u8   compressor CompressorKind
//    7  u8   flags      bit 0: kFlagDense (body is n raw f32 values), others must be 0
//    8  u64  n          elements of the decompressed tensor
//   16  u32  step       step of the compress call (shared randomness must agree)
//   20  u32  tensor_id  tensor of the compress call
//   24  u32  count      compressor-specific count (k, blocks, buckets, ...), see the doc
//   28  u32  body_bytes bytes after the header; the payload is exactly 32 + body_bytes long
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "gradcomp/compressor.hpp"
#include "gradcomp/dtype.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp {

constexpr std::uint32_t kWireMagic = 0x504D4347u;
constexpr std::uint16_t kWireVersion = 1;
constexpr std::size_t kHeaderBytes = 32;
constexpr std::uint8_t kFlagDense = 0x01;

struct WireHeader {
  std::uint32_t magic = kWireMagic;
  std::uint16_t version = kWireVersion;
  std::uint8_t compressor = 0;
  std::uint8_t flags = 0;
  std::uint64_t n = 0;
  std::uint32_t step = 0;
  std::uint32_t tensor_id = 0;
  std::uint32_t count = 0;
  std::uint32_t body_bytes = 0;
};

// ---- little-endian scalar access -----------------------------------------------------------

inline void store_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
inline void store_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline void store_u64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline void store_f32(std::uint8_t* p, float v) { store_u32(p, float_bits(v)); }
inline std::uint16_t load_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline std::uint32_t load_u32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline std::uint64_t load_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline float load_f32(const std::uint8_t* p) { return bits_float(load_u32(p)); }

// ---- header ----------------------------------------------------------------------------------

inline void write_header(const WireHeader& h, std::uint8_t* p) {
  store_u32(p + 0, h.magic);
  store_u16(p + 4, h.version);
  p[6] = h.compressor;
  p[7] = h.flags;
  store_u64(p + 8, h.n);
  store_u32(p + 16, h.step);
  store_u32(p + 20, h.tensor_id);
  store_u32(p + 24, h.count);
  store_u32(p + 28, h.body_bytes);
}

// Reads the header and checks everything that does not depend on the body: length, magic,
// version, compressor id, n, step, tensor id, flags and that the payload length matches
// body_bytes. Each failure names the field.
inline Status read_header(Span<const std::uint8_t> payload, CompressorKind expected_kind,
                          std::uint64_t expected_n, std::uint32_t expected_step,
                          std::uint32_t expected_tensor_id, WireHeader* out) {
  GRADCOMP_CHECK_PAYLOAD(payload.size() >= kHeaderBytes, "payload is ", payload.size(),
                         " bytes, shorter than the ", kHeaderBytes, "-byte header");
  const std::uint8_t* p = payload.data();
  WireHeader h;
  h.magic = load_u32(p + 0);
  h.version = load_u16(p + 4);
  h.compressor = p[6];
  h.flags = p[7];
  h.n = load_u64(p + 8);
  h.step = load_u32(p + 16);
  h.tensor_id = load_u32(p + 20);
  h.count = load_u32(p + 24);
  h.body_bytes = load_u32(p + 28);
  GRADCOMP_CHECK_PAYLOAD(h.magic == kWireMagic, "bad magic 0x", std::hex, h.magic, " (expected 0x",
                         kWireMagic, "): not a gradcomp payload");
  GRADCOMP_CHECK_PAYLOAD(h.version == kWireVersion, "unsupported wire version ", h.version,
                         " (this build reads version ", kWireVersion, ")");
  GRADCOMP_CHECK_PAYLOAD(h.compressor == static_cast<std::uint8_t>(expected_kind), "compressor id ",
                         int(h.compressor), " in header, expected ",
                         int(static_cast<std::uint8_t>(expected_kind)), " (",
                         compressor_name(expected_kind), ")");
  GRADCOMP_CHECK_PAYLOAD((h.flags & ~kFlagDense) == 0, "unknown flag bits 0x", std::hex,
                         int(h.flags), " in header");
  GRADCOMP_CHECK_PAYLOAD(h.n == expected_n, "header says n = ", h.n, ", expected n = ", expected_n);
  GRADCOMP_CHECK_PAYLOAD(h.step == expected_step, "header step ", h.step,
                         " does not match this call's step ", expected_step,
                         " (desynchronised ranks?)");
  GRADCOMP_CHECK_PAYLOAD(h.tensor_id == expected_tensor_id, "header tensor_id ", h.tensor_id,
                         " does not match this call's tensor_id ", expected_tensor_id);
  GRADCOMP_CHECK_PAYLOAD(payload.size() - kHeaderBytes == h.body_bytes, "payload body is ",
                         payload.size() - kHeaderBytes, " bytes but the header says ", h.body_bytes,
                         " (truncated or padded payload)");
  *out = h;
  return Status::success();
}

// ---- packed bit fields -----------------------------------------------------------------------

// Bytes of a stream of `count` fields of `bits` bits, padded to whole 32-bit words.
inline std::uint64_t packed_bytes(std::uint64_t count, std::uint32_t bits) {
  return (count * bits + 31) / 32 * 4;
}

// Writes fields LSB-first into 32-bit little-endian words. The destination must be zeroed.
class BitWriter {
 public:
  explicit BitWriter(std::uint8_t* dst) : dst_(dst) {}
  void put(std::uint32_t value, std::uint32_t bits) {
    for (std::uint32_t b = 0; b < bits; ++b, ++pos_) {
      if ((value >> b) & 1u) {
        // Bit pos_ lives in word pos_/32, bit pos_%32; in bytes: byte pos_/8, bit pos_%8.
        dst_[pos_ / 8] |= static_cast<std::uint8_t>(1u << (pos_ % 8));
      }
    }
  }

 private:
  std::uint8_t* dst_;
  std::uint64_t pos_ = 0;
};

class BitReader {
 public:
  explicit BitReader(const std::uint8_t* src) : src_(src) {}
  std::uint32_t get(std::uint32_t bits) {
    std::uint32_t v = 0;
    for (std::uint32_t b = 0; b < bits; ++b, ++pos_) {
      v |= static_cast<std::uint32_t>((src_[pos_ / 8] >> (pos_ % 8)) & 1u) << b;
    }
    return v;
  }
  std::uint64_t position() const { return pos_; }

 private:
  const std::uint8_t* src_;
  std::uint64_t pos_ = 0;
};

// True if every bit from bit `used_bits` to the end of `bytes` bytes is zero.
inline bool padding_is_zero(const std::uint8_t* data, std::uint64_t used_bits,
                            std::uint64_t bytes) {
  for (std::uint64_t bit = used_bits; bit < bytes * 8; ++bit) {
    if ((data[bit / 8] >> (bit % 8)) & 1u) return false;
  }
  return true;
}

}  // namespace gradcomp
