// The JSON that gradcomp-train writes (schema in docs/train.md; reports/ reads exactly these
// keys). Non-finite numbers are written as null, which JSON can hold and NaN cannot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/status.hpp"

namespace gradcomp::train {

struct RunContext {
  std::string preset;  // the case string as the optimizer resolved it
  std::string model;   // resnet8 | resnet20
  std::uint32_t ranks = 0;
  std::string split;  // iid | noniid
  std::uint64_t train_images = 0, test_images = 0;
  std::uint32_t batch_per_worker = 0, epochs = 0;
  std::uint64_t seed = 0;
  std::string device, hostname, git_sha, date;
};

struct EpochRecord {
  std::uint32_t epoch = 0;  // 1-based
  double train_loss = 0, test_accuracy = 0, images_per_s = 0;
  double wall_s = 0, compute_s = 0, compress_s = 0, communicate_s = 0, update_s = 0;
  double bytes_up_per_worker = 0, bytes_down_per_worker = 0;
  double compression_ratio = 0;  // dense fp32 bytes / bytes_up; null when nothing was sent
};

std::string json_escape(const std::string& s);
std::string json_number(double v);  // shortest round-trip form, "null" if not finite

std::string epoch_json(const EpochRecord& e);
// {"context": {...}, "epochs": [records]}; records are epoch_json() texts.
std::string run_json(const RunContext& c, const std::vector<std::string>& records);
Status write_text_file(const std::string& path, const std::string& text);

// Facts about this machine and checkout for the context block.
std::string cpu_model();  // /proc/cpuinfo "model name", or "unknown"
std::string host_name();
std::string iso8601_now();                           // UTC, e.g. 2024-05-01T12:00:00Z
std::string git_sha(const std::string& source_dir);  // "unknown" outside a git checkout

}  // namespace gradcomp::train
