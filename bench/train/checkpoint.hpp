// The checkpoint file of gradcomp-train (docs/train.md "Checkpoint format"): one file for all
// ranks, little-endian, with a checksum, so that a resumed run continues the same trajectory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::train {

inline constexpr std::uint32_t kCheckpointVersion = 1;

struct RankState {
  std::vector<std::uint8_t> optimizer;  // DistributedOptimizer::save() of this rank
  std::vector<std::uint8_t> buffers;    // the model's BatchNorm buffers (serialize_buffers)
};

struct Checkpoint {
  // "key=value" lines of everything a resumed run must share with the saved one (model, preset,
  // ranks, split, subsets, batch, lr schedule, seed, weight decay); see config_mismatch().
  std::string config;
  std::uint32_t epochs_done = 0;
  std::uint64_t step = 0;   // global steps taken
  std::string epochs_json;  // the per-epoch JSON records written so far, one per line
  std::vector<RankState> ranks;
};

// Layout: "GCTRAIN\n", u32 version, u32 ranks, u32 epochs_done, u64 step, str config,
// str epochs_json, per rank {blob optimizer, blob buffers}, u64 FNV-1a of all bytes before it.
// str and blob are a u64 length followed by the bytes.
std::vector<std::uint8_t> encode_checkpoint(const Checkpoint& c);
// Checks magic, version, every length against the bytes left, trailing bytes and the checksum:
// kCorruptPayload with what was wrong.
Result<Checkpoint> decode_checkpoint(Span<const std::uint8_t> bytes);

// Writes via a temporary file and rename(), so a crash never leaves half a checkpoint.
Status write_file_atomic(const std::string& path, Span<const std::uint8_t> bytes);
Result<std::vector<std::uint8_t>> read_file(const std::string& path);

// "" when the two config texts agree; otherwise a message naming the first key that differs.
std::string config_mismatch(const std::string& saved, const std::string& current);

}  // namespace gradcomp::train
