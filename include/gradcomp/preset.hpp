// Algorithm presets: every algorithm of the seed papers as a case string
// ("dgc:density=0.001,momentum=0.9,warmup=0.25/0.0625/0.015625/0.004/0.001") that resolves to
// one configuration of the step pipeline of algorithms.md §3 (PipelineConfig). The pipeline is
// implemented once per backend; a preset is only a configuration.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gradcomp/compressor.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp {

enum class PresetKind : std::uint8_t {
  kSgdm,            // A1 dense baseline
  kEfSgd,           // A2 EF-SGD / EF-SignSGD (any compressor)
  kSignumMv,        // A3 Signum with majority vote
  kSignSgdMv,       // A3 signSGD with majority vote (beta = 0)
  kDistEfSgdm,      // A4 dist-EF-blockSGD(M): two-way blockwise scaled sign
  kDgc,             // A5 Deep Gradient Compression
  kQsparseLocal,    // A6 Qsparse-local-SGD (sync or async)
  kPqasgd,          // A7 periodic quantized averaging
  kSparseParamAvg,  // A7 sparse parameter averaging
  kCser,            // A8 CSER (plain local SGD)
  kCserPl,          // A8 CSER-PL (partial synchronisation only every H steps)
  kMCser,           // A8 CSER with local Nesterov momentum
  kGmc,             // A9 global momentum compression
  kGmcPlus,         // A9 GMC+ (detached error feedback)
  kDefA,            // A9b DEF / DEF-A baseline (authors' code)
  kPowerSgd,        // A10 PowerSGD with EF and momentum
};

// ---- the stage options of the pipeline (algorithms.md §3.2) --------------------------------

enum class MomentumForm : std::uint8_t { kNone, kHeavyBall, kNesterov, kEma };
enum class MomentumPlacement : std::uint8_t {
  kPre,
  kPost
};  // before compression / after aggregation
enum class LrPlacement : std::uint8_t { kInside, kOutside, kOutsideRescale };
enum class Aggregation : std::uint8_t { kMean, kMajority, kPowerSgd };
enum class MajorityTie : std::uint8_t { kZero, kPlus };
enum class ServerTopology : std::uint8_t { kParameterServer, kChunked };
enum class WeightDecayForm : std::uint8_t { kNone, kPlain, kHeavyBall, kNesterov };
// How workers' models relate to each other.
enum class Family : std::uint8_t {
  kSynchronous,  // S0..S11: one shared model, a compressed aggregate every step
  kLocalSteps,   // S12: local SGD, compressed model drift every H steps (Qsparse, PQASGD)
  kPartialAvg,   // S13: local models, partial averaging of shared blocks (CSER, SPA)
  kDetached,     // DEF / GMC+ option A: gradients at w - coeff * e (detached error feedback)
};
enum class CserForm : std::uint8_t { kCode, kPaper2c };
enum class GmcPlusOption : std::uint8_t { kA, kB };

// Everything the reference pipeline needs, explicit: the output of resolving a preset.
struct PipelineConfig {
  PresetKind preset = PresetKind::kSgdm;
  Family family = Family::kSynchronous;

  // S1 local gradient clipping: if ||g|| > clip / sqrt(P), scale to that norm. 0 = off.
  double clip = 0.0;
  // S2 / S9 momentum.
  MomentumForm momentum_form = MomentumForm::kNone;
  MomentumPlacement momentum_placement = MomentumPlacement::kPre;
  double momentum = 0.0;
  // S9 Nesterov after aggregation: a <- a + m as in PowerSGD's code (§3.2 S9 [A-code]) instead
  // of the usual a <- a + mu m.
  bool nesterov_adds_buffer = false;
  // GMC: global momentum from the last aggregated message enters before compression.
  bool global_momentum = false;
  // S3 learning-rate placement.
  LrPlacement lr_placement = LrPlacement::kOutside;
  // S4..S6 worker compression and error feedback.
  bool error_feedback = false;
  CompressorDesc up;              // identity = dense
  bool momentum_masking = false;  // DGC: zero momentum where the message was non-zero
  // DGC warm-up: density for epoch e = warmup[e] while e < warmup.size(), then up.density.
  std::vector<double> warmup;
  // S7 aggregation.
  Aggregation aggregation = Aggregation::kMean;
  MajorityTie majority_tie = MajorityTie::kZero;
  // S8 two-way compression with server error feedback.
  bool two_way = false;
  CompressorDesc down;
  ServerTopology server = ServerTopology::kParameterServer;
  // S10 decoupled weight decay.
  WeightDecayForm weight_decay_form = WeightDecayForm::kNone;
  double weight_decay = 0.0;
  // S12 local steps: synchronise every `period` steps (1 = every step).
  std::uint32_t period = 1;
  bool async = false;  // Qsparse asynchronous: per-worker deterministic sync schedule
  // S13 partial averaging (CSER family, SPA): C1 every step, C2 every `period`-th step.
  CompressorDesc c1;  // grbs/rbgs; kind identity with n = 0 means "none"
  CompressorDesc c2;
  CserForm cser_form = CserForm::kCode;
  // Detached error feedback: worker k takes its gradient at w - coeff * e_k (lr-scaled units).
  double detach = 0.0;
  GmcPlusOption gmc_plus = GmcPlusOption::kA;
  // PowerSGD: weight decay before momentum after the reduce (epfml code).
  bool powersgd_wd_after_reduce = true;
};

// ---- preset descriptors ------------------------------------------------------------------------

struct PresetDesc {
  PresetKind kind = PresetKind::kSgdm;
  // Every option of this preset with its value, in the preset's canonical order (defaults
  // filled in). Compressor options are written with a prefix: "up.density", "down.block".
  std::vector<std::pair<std::string, std::string>> options;

  std::string to_string() const;
  bool operator==(const PresetDesc& o) const { return to_string() == o.to_string(); }
  bool operator!=(const PresetDesc& o) const { return !(*this == o); }
  // The value of an option ("" if the preset has no such option).
  std::string get(std::string_view key) const;
};

Result<PresetDesc> parse_preset(std::string_view text);
const char* preset_name(PresetKind kind);

// The configuration a preset stands for, for a flattened parameter vector of n elements with
// the given tensor layout (empty = one 1-D tensor).
Result<PipelineConfig> resolve_preset(const PresetDesc& preset, std::uint64_t n,
                                      const std::vector<std::vector<std::uint64_t>>& shapes);

struct PresetInfo {
  PresetKind kind;
  std::string name;
  std::string summary;
  std::vector<OptionInfo> options;
};
const std::vector<PresetInfo>& preset_catalog();

}  // namespace gradcomp
