// Learning-rate schedules per global step: linear warm-up, then constant, step decay or cosine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/status.hpp"

namespace gradcomp::train {

struct LrSchedule {
  enum class Kind : std::uint8_t { kConstant, kSteps, kCosine };
  Kind kind = Kind::kConstant;
  double base = 0.02;
  // Linear warm-up over the first round(warmup_epochs * steps_per_epoch) steps: step t (0-based)
  // gets base * (t + 1) / W.
  double warmup_epochs = 0.0;
  // kSteps: after m completed epochs (for each m in milestones) the lr is multiplied by gamma.
  std::vector<std::uint32_t> milestones;
  double gamma = 0.1;
  // kCosine: from base down to min_lr over the steps after warm-up.
  double min_lr = 0.0;

  // Checks the values (base > 0, gamma in (0, 1], warm-up shorter than the run, ...).
  Status validate(std::uint32_t epochs) const;
  // The lr of global step t (0-based) in a run of `epochs` epochs of steps_per_epoch steps.
  double at(std::uint64_t t, std::uint64_t steps_per_epoch, std::uint32_t epochs) const;
  // "cosine(base=0.05,warmup=1,min=0)": for logs, the checkpoint's configuration check.
  std::string describe() const;
};

// "constant", "cosine" or "steps" (the kind only; the values come from separate options).
Result<LrSchedule::Kind> parse_lr_kind(const std::string& text);
// "3,6" -> {3, 6}: increasing positive integers.
Result<std::vector<std::uint32_t>> parse_milestones(const std::string& text);

}  // namespace gradcomp::train
