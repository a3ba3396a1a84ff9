// Reading and writing NumPy .npy files of float32 (the format of NumPy's NEP 1 /
// numpy.lib.format, versions 1.0, 2.0 and 3.0), written from the format description: no NumPy
// or Python needed.
//
//   bytes 0..5   magic "\x93NUMPY"
//   bytes 6, 7   major, minor version (1.0, 2.0 or 3.0)
//   then         header length: u16 little-endian (1.0) or u32 little-endian (2.0, 3.0)
//   then         the header: a Python dict literal with exactly the keys 'descr',
//                'fortran_order' and 'shape', padded with spaces and ended by '\n'
//   then         the data: prod(shape) elements, C order
//
// gradcomp only accepts descr '<f4' (little-endian float32) with fortran_order False, of any
// shape (including the 0-d shape () and shapes with a zero extent); the data is returned
// flattened. Everything else is rejected with a Status that names the problem. Nothing here
// throws.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::npy {

struct Array {
  std::vector<std::uint64_t> shape;  // () for a 0-d array
  std::vector<float> data;           // prod(shape) values, C order (flattened)
};

// "(2, 3)", "(5,)", "()": the shape as Python prints a tuple.
std::string shape_to_string(const std::vector<std::uint64_t>& shape);

// prod(shape), or an error if the product overflows 64 bits.
Result<std::uint64_t> element_count(const std::vector<std::uint64_t>& shape);

// Parses a whole .npy file held in memory. Malformed files give kInvalidArgument; `what` (a
// file name) prefixes the message.
Result<Array> parse(Span<const std::uint8_t> bytes, const std::string& what = "npy");

// Reads a file: kIoError if it cannot be read, otherwise as parse().
Result<Array> read_file(const std::string& path);

// Encodes a version 1.0 file ('<f4', fortran_order False, the given shape) whose header is
// padded so that the data starts at a multiple of 64 bytes. data.size() must equal
// prod(shape). (Version 2.0 is used only if the header would not fit in 65535 bytes.)
Result<std::vector<std::uint8_t>> encode(const std::vector<std::uint64_t>& shape,
                                         Span<const float> data);

// encode() then write to `path` (kIoError if it cannot be written).
Status write_file(const std::string& path, const std::vector<std::uint64_t>& shape,
                  Span<const float> data);

// Whole-file helpers for raw bytes (payload files), with kIoError naming the path.
Result<std::vector<std::uint8_t>> read_bytes(const std::string& path);
Status write_bytes(const std::string& path, Span<const std::uint8_t> bytes);

}  // namespace gradcomp::npy
