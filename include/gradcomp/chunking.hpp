// Chunk boundaries of the chunked server (algorithms.md §6.3): the flattened vector of n
// elements is cut into P contiguous chunks, chunk j owned by rank j, which runs the server-side
// error feedback and re-compression of that chunk (two-way compression, pipeline stage S8).
//
//   c       = ceil(n / P) rounded up to a multiple of 32 elements
//   chunk j = [min(j c, n), min((j + 1) c, n))        for j = 0 .. P-1
//
// Rounding to 32 elements keeps every chunk boundary on a 32-bit word of a sign bitmap, so the
// owners' messages are whole sign words (the bit layout of docs/wire-format.md) and a worker's
// bitmap splits into per-owner pieces without shifting bits. Trailing chunks may be shorter or
// empty (small n, many ranks); an empty chunk's owner sends nothing. Unlike DeepSpeed (which pads
// the tensor to a multiple of P * lcm(P, 8)), nothing is padded: the last non-empty chunk ends at
// n. The reference optimizer (reference/ref_opt_sync.cpp) and the MPI implementation use this
// one definition.
#pragma once

#include <cstdint>
#include <vector>

namespace gradcomp {

struct ChunkRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;  // exclusive
  std::uint64_t size() const { return end - begin; }
  bool operator==(const ChunkRange& o) const { return begin == o.begin && end == o.end; }
};

// Elements per chunk c (0 when n == 0 or owners == 0).
inline std::uint64_t chunk_size(std::uint64_t n, std::uint32_t owners) {
  if (n == 0 || owners == 0) return 0;
  const std::uint64_t even = (n + owners - 1) / owners;  // ceil(n / P)
  return (even + 31) / 32 * 32;
}

// The P chunks (an empty vector when owners == 0).
inline std::vector<ChunkRange> chunk_bounds(std::uint64_t n, std::uint32_t owners) {
  std::vector<ChunkRange> chunks;
  const std::uint64_t c = chunk_size(n, owners);
  chunks.reserve(owners);
  for (std::uint64_t j = 0; j < owners; ++j) {
    const std::uint64_t begin = j * c < n ? j * c : n;
    const std::uint64_t end = (j + 1) * c < n ? (j + 1) * c : n;
    chunks.push_back({begin, end});
  }
  return chunks;
}

}  // namespace gradcomp
