#include "lr_schedule.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace gradcomp::train {

Status LrSchedule::validate(std::uint32_t epochs) const {
  GRADCOMP_CHECK_ARG(std::isfinite(base) && base > 0, "--lr must be > 0, got ", base);
  GRADCOMP_CHECK_ARG(std::isfinite(warmup_epochs) && warmup_epochs >= 0,
                     "--warmup-epochs must be >= 0, got ", warmup_epochs);
  GRADCOMP_CHECK_ARG(warmup_epochs < epochs || warmup_epochs == 0, "--warmup-epochs (",
                     warmup_epochs, ") must be shorter than --epochs (", epochs, ")");
  GRADCOMP_CHECK_ARG(std::isfinite(gamma) && gamma > 0 && gamma <= 1,
                     "--lr-gamma must be in (0, 1], got ", gamma);
  GRADCOMP_CHECK_ARG(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= base,
                     "--lr-min must be in [0, --lr], got ", min_lr);
  GRADCOMP_CHECK_ARG(kind != Kind::kSteps || !milestones.empty(),
                     "--lr-schedule steps needs --lr-milestones");
  return Status::success();
}

double LrSchedule::at(std::uint64_t t, std::uint64_t steps_per_epoch, std::uint32_t epochs) const {
  const auto warm =
      static_cast<std::uint64_t>(std::llround(warmup_epochs * double(steps_per_epoch)));
  if (t < warm) return base * double(t + 1) / double(warm);
  switch (kind) {
    case Kind::kConstant: return base;
    case Kind::kSteps: {
      const std::uint64_t done = steps_per_epoch == 0 ? 0 : t / steps_per_epoch;
      double lr = base;
      for (std::uint32_t m : milestones)
        if (done >= m) lr *= gamma;
      return lr;
    }
    case Kind::kCosine: {
      const std::uint64_t total = steps_per_epoch * epochs;
      if (total <= warm) return base;
      const double p = double(t - warm) / double(total - warm);
      constexpr double kPi = 3.14159265358979323846;
      return min_lr + (base - min_lr) * 0.5 * (1.0 + std::cos(kPi * std::min(p, 1.0)));
    }
  }
  return base;
}

namespace {
// Shortest text that reads back as the same double.
std::string num(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}
}  // namespace

std::string LrSchedule::describe() const {
  std::ostringstream os;
  switch (kind) {
    case Kind::kConstant: os << "constant(base=" << num(base); break;
    case Kind::kSteps: {
      os << "steps(base=" << num(base) << ",milestones=";
      for (std::size_t i = 0; i < milestones.size(); ++i) os << (i ? "/" : "") << milestones[i];
      os << ",gamma=" << num(gamma);
      break;
    }
    case Kind::kCosine: os << "cosine(base=" << num(base) << ",min=" << num(min_lr); break;
  }
  os << ",warmup=" << num(warmup_epochs) << ")";
  return os.str();
}

Result<LrSchedule::Kind> parse_lr_kind(const std::string& text) {
  if (text == "constant") return LrSchedule::Kind::kConstant;
  if (text == "steps") return LrSchedule::Kind::kSteps;
  if (text == "cosine") return LrSchedule::Kind::kCosine;
  return make_status(StatusCode::kInvalidArgument, "--lr-schedule: '", text,
                     "' is not a schedule (use constant, steps or cosine)");
}

Result<std::vector<std::uint32_t>> parse_milestones(const std::string& text) {
  std::vector<std::uint32_t> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    char* end = nullptr;
    const unsigned long v = std::strtoul(item.c_str(), &end, 10);
    GRADCOMP_CHECK_ARG(!item.empty() && end != nullptr && *end == '\0' && item[0] != '-' && v > 0 &&
                           v < (1ul << 31),
                       "--lr-milestones: '", item, "' is not a positive epoch count");
    GRADCOMP_CHECK_ARG(out.empty() || v > out.back(), "--lr-milestones must be increasing: ", text);
    out.push_back(static_cast<std::uint32_t>(v));
    pos = comma + 1;
  }
  return out;
}

}  // namespace gradcomp::train
