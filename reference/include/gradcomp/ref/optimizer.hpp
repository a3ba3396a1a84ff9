// The reference step pipeline (algorithms.md §3): all P workers of a data-parallel run in one
// process, deterministic, written for clarity. It is the oracle the distributed optimizer of the
// MPI issue must reproduce, and the engine of the P-worker simulator (simulator.hpp).
//
// One Optimizer runs one preset. Per step the caller
//   1. asks gradient_point(i) for the point where worker i's gradient must be taken (its model
//      replica, or a detached point for DEF / GMC+),
//   2. computes grads[i] = gradient of worker i's mean minibatch loss at that point,
//   3. calls step(), which compresses, communicates (simulated), aggregates and updates.
// Every byte a real run would send is counted in the CommRecord.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gradcomp/preset.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::ref {

struct StepInput {
  std::uint32_t step = 0;   // global step t (0, 1, ...); keys the RNG of the compressors
  std::uint32_t epoch = 0;  // for DGC's warm-up density schedule
  double lr = 0.1;          // eta_t
};

// Bytes on the wire in one step (payload sizes, headers included), per worker and direction:
// up = what the worker sends, down = what it receives, for the collective the algorithm uses
// (docs/algorithms.md, "Communication accounting").
struct CommRecord {
  std::vector<std::uint64_t> up;
  std::vector<std::uint64_t> down;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // P = workers >= 1 workers, all starting from x0. `shapes` is the tensor layout of x0 (empty:
  // one 1-D tensor); it is handed to layout-aware compressors.
  static Result<std::unique_ptr<Optimizer>> create(
      const PresetDesc& preset, std::uint32_t workers, Span<const float> x0,
      const std::vector<std::vector<std::uint64_t>>& shapes = {});

  virtual const PipelineConfig& config() const = 0;
  virtual std::uint32_t workers() const = 0;
  virtual std::uint64_t size() const = 0;

  // Where worker i's gradient is taken this step.
  virtual Span<const float> gradient_point(std::uint32_t worker) const = 0;

  // One step. grads has one vector of size() elements per worker. On error (wrong sizes,
  // NaN/Inf gradients, a compressor error) no state changes.
  virtual Status step(const StepInput& in, const std::vector<std::vector<float>>& grads,
                      CommRecord* comm) = 0;

  // Worker i's model replica x_i (identical on all workers for synchronous algorithms).
  virtual Span<const float> model(std::uint32_t worker) const = 0;

  // The model a run is evaluated on: the shared model, or the mean of the replicas (CSER,
  // local SGD between syncs), or the global model (DEF), as the spec says for each algorithm.
  virtual std::vector<float> evaluation_model() const = 0;

  // Error-feedback memories for the telescoping property (zeros when the algorithm has none),
  // in the units the pipeline stores them (docs/algorithms.md says which).
  virtual std::vector<float> worker_error(std::uint32_t worker) const = 0;
  virtual std::vector<float> server_error() const = 0;
};

}  // namespace gradcomp::ref
