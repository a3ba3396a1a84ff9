// Fashion-MNIST from the IDX files of Debian's dataset-fashion-mnist (gzip-compressed or plain:
// zlib's gzread reads both). No torch here, so the reader is testable on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/status.hpp"

namespace gradcomp::train {

// Where Debian installs the data set; GRADCOMP_FMNIST_DIR or --data-dir override it.
inline constexpr const char* kDefaultFmnistDir = "/usr/share/datasets/fashion-mnist";

// One IDX array of unsigned bytes (type code 0x08), the only type the MNIST files use.
struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;  // product(dims) bytes, row-major
};

// Reads an IDX file: magic 0x00 0x00 0x08 ndims, ndims big-endian uint32 sizes, then the data.
// A wrong magic, an unsupported type, a zero dimension or a short file is kCorruptPayload
// naming the file; a missing file is kIoError. At most max_items entries of the first
// dimension are read (0 = all), so a subset does not decompress the whole file.
Result<IdxArray> read_idx(const std::string& path, std::uint32_t max_items = 0);

// Images as raw pixels (n x rows x cols bytes) plus labels in [0, 10).
struct ImageSet {
  std::uint32_t n = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;
  std::vector<std::uint8_t> labels;
};

// The train or test split (the first `limit` images; 0 = all) from dir. Checks that images are
// 3-D, labels 1-D, their counts agree, and every label is < 10.
Result<ImageSet> load_fmnist(const std::string& dir, bool train, std::uint32_t limit);

// Normalisation constants of Fashion-MNIST (mean and std of the training pixels in [0, 1]).
inline constexpr float kFmnistMean = 0.2860f;
inline constexpr float kFmnistStd = 0.3530f;

}  // namespace gradcomp::train
