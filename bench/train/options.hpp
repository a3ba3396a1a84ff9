// Command-line options of gradcomp-train (docs/train.md "Options").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/preset.hpp"
#include "gradcomp/status.hpp"
#include "lr_schedule.hpp"
#include "split.hpp"

namespace gradcomp::train {

struct TrainOptions {
  std::string preset = "sgdm";
  std::string model = "resnet8";  // resnet8 | resnet20
  std::uint32_t epochs = 3;
  std::uint32_t batch = 64;  // per worker
  LrSchedule lr;
  // --weight-decay: < 0 = not given (the preset's own wd applies; 0 if it has none).
  double weight_decay = -1.0;
  Split split = Split::kIid;
  std::uint32_t train_subset = 0;  // 0 = all 60,000
  std::uint32_t test_subset = 0;   // 0 = all 10,000
  std::uint64_t seed = 0;
  std::string checkpoint;  // written after every epoch when set
  std::string resume;
  std::string json;
  std::uint32_t threads = 0;  // torch intra-op threads per rank; 0 = cores / ranks on the node
  std::string data_dir;       // "" = $GRADCOMP_FMNIST_DIR or the Debian path
  std::string compute = "any";
  std::string algorithm = "auto";
  bool deterministic = false;     // --reduction deterministic
  std::string progress = "auto";  // auto | bar | lines | none
  bool help = false;
};

// Parses argv[1..]; "--opt value" and "--opt=value" both work. Unknown options, missing or
// malformed values are kInvalidArgument naming the option.
Result<TrainOptions> parse_train_args(const std::vector<std::string>& args);
std::string train_usage();

// The preset a run uses: --preset with --seed as the preset's compressor seed (unless the text
// sets seed=) and --weight-decay as its decoupled `wd` where the preset has one. Presets without
// a `wd` option get the weight decay as L2 on the gradient instead (coupled_wd). A text that sets
// wd= and a different --weight-decay is kInvalidArgument.
struct RunPreset {
  PresetDesc desc;
  std::string text;         // the amended case string
  double coupled_wd = 0.0;  // added as coupled_wd * x to each gradient by the trainer
};
Result<RunPreset> resolve_run_preset(const std::string& text, std::uint64_t seed,
                                     double weight_decay);

}  // namespace gradcomp::train
