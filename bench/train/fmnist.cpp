#include "fmnist.hpp"

#include <zlib.h>

#include <memory>

namespace gradcomp::train {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly n bytes or reports how many were missing.
Status read_exact(gzFile f, std::uint8_t* out, std::uint64_t n, const std::string& path,
                  const char* what) {
  std::uint64_t got = 0;
  while (got < n) {
    // gzread takes an unsigned int count: read in chunks of at most 1 GiB.
    const std::uint64_t chunk = std::min<std::uint64_t>(n - got, 1u << 30);
    const int r = gzread(f, out + got, static_cast<unsigned>(chunk));
    if (r < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      return make_status(StatusCode::kCorruptPayload, path, ": ", what,
                         ": zlib error: ", msg != nullptr ? msg : "unknown");
    }
    if (r == 0) {
      return make_status(StatusCode::kCorruptPayload, path, ": file ends inside the ", what, " (",
                         got, " of ", n, " bytes)");
    }
    got += static_cast<std::uint64_t>(r);
  }
  return Status::success();
}

}  // namespace

Result<IdxArray> read_idx(const std::string& path, std::uint32_t max_items) {
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) return make_status(StatusCode::kIoError, path, ": cannot open");
  std::uint8_t magic[4];
  GRADCOMP_TRY(read_exact(f.get(), magic, 4, path, "header"));
  if (magic[0] != 0 || magic[1] != 0) {
    return make_status(StatusCode::kCorruptPayload, path, ": not an IDX file (magic bytes ",
                       int(magic[0]), " ", int(magic[1]), ", expected 0 0)");
  }
  if (magic[2] != 0x08) {
    return make_status(StatusCode::kCorruptPayload, path, ": IDX type code ", int(magic[2]),
                       " is not supported (only 0x08, unsigned bytes)");
  }
  const int ndims = magic[3];
  if (ndims < 1 || ndims > 4) {
    return make_status(StatusCode::kCorruptPayload, path, ": IDX with ", ndims,
                       " dimensions (expected 1 to 4)");
  }
  IdxArray out;
  std::uint64_t total = 1;
  for (int d = 0; d < ndims; ++d) {
    std::uint8_t b[4];
    GRADCOMP_TRY(read_exact(f.get(), b, 4, path, "header"));
    const std::uint32_t size = (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) |
                               (std::uint32_t(b[2]) << 8) | std::uint32_t(b[3]);
    if (size == 0) {
      return make_status(StatusCode::kCorruptPayload, path, ": dimension ", d, " is 0");
    }
    out.dims.push_back(size);
  }
  if (max_items != 0 && max_items < out.dims[0]) out.dims[0] = max_items;
  for (std::uint32_t s : out.dims) total *= s;
  // 60k images are 47 MB; anything above 4 GiB is a corrupt header, not a data set.
  if (total > (std::uint64_t(1) << 32)) {
    return make_status(StatusCode::kCorruptPayload, path, ": header claims ", total,
                       " bytes of data");
  }
  out.data.resize(total);
  GRADCOMP_TRY(read_exact(f.get(), out.data.data(), total, path, "data"));
  return out;
}

Result<ImageSet> load_fmnist(const std::string& dir, bool train, std::uint32_t limit) {
  const std::string prefix = dir + (train ? "/train-" : "/t10k-");
  // Debian ships .gz; accept unpacked files too (zlib reads plain files transparently).
  auto pick = [&](const std::string& stem) {
    const std::string gz = prefix + stem + ".gz";
    if (GzFile probe{gzopen(gz.c_str(), "rb")}) return gz;
    return prefix + stem;
  };
  auto images = read_idx(pick("images-idx3-ubyte"), limit);
  if (!images.ok()) return images.status();
  auto labels = read_idx(pick("labels-idx1-ubyte"), limit);
  if (!labels.ok()) return labels.status();
  if (images->dims.size() != 3) {
    return make_status(StatusCode::kCorruptPayload, prefix, "images: expected 3 dimensions, got ",
                       images->dims.size());
  }
  if (labels->dims.size() != 1) {
    return make_status(StatusCode::kCorruptPayload, prefix, "labels: expected 1 dimension, got ",
                       labels->dims.size());
  }
  if (images->dims[0] != labels->dims[0]) {
    return make_status(StatusCode::kCorruptPayload, prefix, "*: ", images->dims[0], " images but ",
                       labels->dims[0], " labels");
  }
  if (limit != 0 && images->dims[0] < limit) {
    return make_status(StatusCode::kInvalidArgument, prefix, "*: asked for ", limit,
                       " images, the file has ", images->dims[0]);
  }
  for (std::size_t i = 0; i < labels->data.size(); ++i) {
    if (labels->data[i] >= 10) {
      return make_status(StatusCode::kCorruptPayload, prefix, "labels: label ", i, " is ",
                         int(labels->data[i]), " (expected 0..9)");
    }
  }
  ImageSet s;
  s.n = images->dims[0];
  s.rows = images->dims[1];
  s.cols = images->dims[2];
  s.pixels = std::move(images.value().data);
  s.labels = std::move(labels.value().data);
  return s;
}

}  // namespace gradcomp::train
