#include "split.hpp"

#include <algorithm>
#include <numeric>
#include <random>

namespace gradcomp::train {
namespace {

// SplitMix64 finaliser: decorrelates nearby (seed, stream) pairs before seeding the engine.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, bound) by rejection (Lemire's bounded draw without the multiply trick):
// std::uniform_int_distribution is implementation-defined, this is not.
std::uint64_t below(std::mt19937_64& g, std::uint64_t bound) {
  const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % bound);
  std::uint64_t x;
  do {
    x = g();
  } while (x >= limit);
  return x % bound;
}

}  // namespace

Result<Split> parse_split(const std::string& text) {
  if (text == "iid") return Split::kIid;
  if (text == "noniid" || text == "non-iid") return Split::kNonIid;
  return make_status(StatusCode::kInvalidArgument, "--split: '", text,
                     "' is not a split (use iid or noniid)");
}

const char* split_name(Split s) { return s == Split::kIid ? "iid" : "noniid"; }

std::vector<std::uint32_t> seeded_permutation(std::uint32_t n, std::uint64_t seed,
                                              std::uint64_t stream) {
  std::vector<std::uint32_t> p(n);
  std::iota(p.begin(), p.end(), 0u);
  std::mt19937_64 g(mix(seed ^ mix(stream)));
  for (std::uint32_t i = n; i > 1; --i) {
    const auto j = static_cast<std::uint32_t>(below(g, i));
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

Result<std::vector<std::vector<std::uint32_t>>> make_shards(const std::vector<std::uint8_t>& labels,
                                                            std::uint32_t ranks, Split split,
                                                            std::uint64_t seed) {
  const auto n = static_cast<std::uint32_t>(labels.size());
  GRADCOMP_CHECK_ARG(ranks >= 1, "make_shards: ranks must be >= 1");
  GRADCOMP_CHECK_ARG(n >= ranks, "make_shards: ", n, " training images cannot be split over ",
                     ranks, " ranks");
  std::vector<std::uint32_t> order;
  if (split == Split::kIid) {
    order = seeded_permutation(n, seed, /*stream=*/0x5b11d);
  } else {
    // Sorting by label (ties by index) and cutting contiguous shards gives each rank about
    // 10 / P classes: the usual label-skewed split.
    order.resize(n);
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return labels[a] < labels[b]; });
  }
  const std::uint32_t m = n / ranks;
  std::vector<std::vector<std::uint32_t>> shards(ranks);
  for (std::uint32_t r = 0; r < ranks; ++r) {
    shards[r].assign(order.begin() + std::uint64_t(r) * m,
                     order.begin() + std::uint64_t(r + 1) * m);
    std::sort(shards[r].begin(), shards[r].end());
  }
  return shards;
}

std::vector<std::uint32_t> epoch_order(std::uint32_t shard_size, std::uint64_t seed,
                                       std::uint32_t epoch, std::uint32_t rank) {
  return seeded_permutation(shard_size, seed, (std::uint64_t(rank) << 32) | epoch);
}

}  // namespace gradcomp::train
