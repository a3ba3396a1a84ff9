// Which training images each rank sees, and in which order per epoch. Pure functions of
// (labels, ranks, seed, epoch): a resumed run recomputes them, so they need no saved state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/status.hpp"

namespace gradcomp::train {

enum class Split : std::uint8_t {
  kIid,     // a seeded random permutation cut into P equal shards
  kNonIid,  // label-skewed: images sorted by label, P contiguous equal shards
};

Result<Split> parse_split(const std::string& text);
const char* split_name(Split s);

// Shards of the n = labels.size() images over `ranks` ranks: every shard has floor(n / ranks)
// images (the remainder is dropped so every rank runs the same number of steps), shards are
// disjoint, and each lists image indices in increasing order. ranks must be in [1, n].
Result<std::vector<std::vector<std::uint32_t>>> make_shards(const std::vector<std::uint8_t>& labels,
                                                            std::uint32_t ranks, Split split,
                                                            std::uint64_t seed);

// A permutation of [0, n) drawn from (seed, stream): Fisher-Yates over std::mt19937_64 with an
// unbiased bounded draw, so it is the same on every platform.
std::vector<std::uint32_t> seeded_permutation(std::uint32_t n, std::uint64_t seed,
                                              std::uint64_t stream);

// The order in which `rank` visits its shard positions in `epoch` (0-based).
std::vector<std::uint32_t> epoch_order(std::uint32_t shard_size, std::uint64_t seed,
                                       std::uint32_t epoch, std::uint32_t rank);

}  // namespace gradcomp::train
