// The P-worker simulator: runs any preset with P workers in one process, deterministically, on
// objectives that need no data files. Its trajectory is the oracle the MPI runs must reproduce.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gradcomp/ref/optimizer.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::ref {

enum class ObjectiveKind : std::uint8_t {
  kLeastSquares,  // multi-output linear regression, mean 0.5 ||W a - y||^2 (strongly convex)
  kLogistic,      // multinomial logistic regression (softmax cross-entropy) with bias
  kMlp,           // one hidden tanh layer + softmax cross-entropy
};

enum class DataSplit : std::uint8_t {
  kIid,     // samples dealt to workers round-robin after a seeded shuffle
  kNonIid,  // label-skewed: each worker holds mostly its own classes / a contiguous target range
};

struct SimulatorConfig {
  std::string preset = "sgdm";  // preset case string
  std::uint32_t workers = 4;
  ObjectiveKind objective = ObjectiveKind::kLeastSquares;
  DataSplit split = DataSplit::kIid;
  std::uint32_t features = 16;  // input dimension d
  std::uint32_t outputs = 4;    // regression outputs / classes
  std::uint32_t hidden = 8;     // MLP hidden units
  std::uint32_t samples_per_worker = 64;
  // Total samples; 0 = samples_per_worker * workers. Set it to keep the data set (and so the
  // objective and its optimum) the same for every P.
  std::uint32_t samples = 0;
  // Non-IID split: fraction of each worker's shard taken from its own label range (1 = disjoint
  // label ranges); the rest is dealt round-robin from a shared pool.
  double skew = 0.8;
  std::uint32_t batch = 0;  // minibatch per worker; 0 = full local batch
  double noise = 0.0;       // least squares: label noise std (0: interpolation)
  std::uint32_t steps = 100;
  std::uint32_t steps_per_epoch = 10;  // epoch = step / steps_per_epoch (DGC warm-up)
  // Learning rate: lr * (decay ^ number of milestones passed); milestones in steps.
  double lr = 0.05;
  double lr_decay = 0.1;
  std::vector<std::uint32_t> lr_milestones;
  std::uint64_t seed = 1;  // data, initial point and minibatches
  bool record_params = false;
};

struct StepTrace {
  std::uint32_t step = 0;
  double lr = 0.0;
  double loss = 0.0;                      // full-data loss of the evaluation model after the step
  std::uint64_t checksum = 0;             // FNV-1a of the evaluation model's bytes
  std::vector<std::uint64_t> bytes_up;    // per worker
  std::vector<std::uint64_t> bytes_down;  // per worker
  std::vector<float> params;              // evaluation model, only when record_params
};

struct Trajectory {
  std::string preset;  // canonical case string
  double initial_loss = 0.0;
  std::vector<StepTrace> steps;
  std::vector<float> final_params;               // evaluation model at the end
  std::vector<std::vector<float>> final_models;  // every worker's replica at the end
};

Result<Trajectory> simulate(const SimulatorConfig& cfg);

// The same with another optimizer behind the run (tests; default: Optimizer::create).
using OptimizerFactory = std::function<Result<std::unique_ptr<Optimizer>>(
    const PresetDesc& preset, std::uint32_t workers, Span<const float> x0,
    const std::vector<std::vector<std::uint64_t>>& shapes)>;
Result<Trajectory> simulate(const SimulatorConfig& cfg, const OptimizerFactory& factory);

// The trajectory as one JSON object (docs/simulator.md): the config, per-step lr, loss,
// checksum and bytes per worker, and the parameters of every step when cfg.record_params.
std::string trajectory_json(const SimulatorConfig& cfg, const Trajectory& trajectory);

const char* objective_name(ObjectiveKind kind);  // "ls", "logistic", "mlp"
const char* split_name(DataSplit split);         // "iid", "noniid"

}  // namespace gradcomp::ref
