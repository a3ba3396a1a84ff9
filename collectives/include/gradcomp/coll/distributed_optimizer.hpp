// The distributed optimizer: one rank's side of any preset of the step pipeline
// (algorithms.md §3), with the compute of a kernel implementation from the registry and the
// communication of a Communicator. A trainer calls step() once per step with its flattened
// gradient bucket; P ranks together reproduce the reference P-worker simulator
// (reference/include/gradcomp/ref/simulator.hpp): bit for bit in deterministic mode with the
// reference compute backend, within docs/tolerances.md otherwise.
//
// Contract used by bench/train (gradcomp-train) and the MPI tests; see docs/distributed.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gradcomp/communicator.hpp"
#include "gradcomp/preset.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::coll {

enum class ReductionMode : std::uint8_t {
  // Every reduction sums in rank order, in double where the reference does (allgather, then a
  // local sum): the simulator's arithmetic exactly.
  kDeterministic,
  // The transport's own reduction order (MPI_Allreduce etc.): faster, equal within tolerance.
  kFast,
};

struct DistributedOptions {
  // Kernel implementation by registry name: "ref:any", "kk:serial", "any" (first that can run).
  std::string compute = "any";
  ReductionMode mode = ReductionMode::kFast;
  // Collective algorithm: "auto" applies the documented break-even rule; otherwise a name from
  // docs/collectives.md ("dense", "allgather", "shared-support", "two-phase", "majority").
  std::string algorithm = "auto";
};

struct StepInput {
  std::uint32_t step = 0;   // global step t; keys the compressors' RNG
  std::uint32_t epoch = 0;  // DGC warm-up
  double lr = 0.1;
};

// What one step cost this rank.
struct StepStats {
  std::uint64_t bytes_up = 0;    // bytes this rank sent (payloads, headers, indices, scales)
  std::uint64_t bytes_down = 0;  // bytes this rank received
  double seconds_compress = 0.0;
  double seconds_communicate = 0.0;
  double seconds_update = 0.0;
};

class DistributedOptimizer {
 public:
  virtual ~DistributedOptimizer() = default;

  // Collective over comm. Every rank passes the same preset, x0 and shapes (checked: a
  // disagreement is kInvalidArgument on every rank, never a hang). comm must outlive the
  // optimizer.
  static Result<std::unique_ptr<DistributedOptimizer>> create(
      const PresetDesc& preset, Communicator& comm, Span<const float> x0,
      const std::vector<std::vector<std::uint64_t>>& shapes, const DistributedOptions& options);

  virtual const PipelineConfig& config() const = 0;
  virtual std::uint64_t size() const = 0;

  // Where this rank's gradient must be taken this step (its model replica, or the detached
  // point of DEF / GMC+).
  virtual Span<const float> gradient_point() const = 0;

  // One step, collective. grad: this rank's gradient at gradient_point(), size() elements. On
  // error (wrong size, NaN/Inf on any rank, a compressor error) every rank returns an error and
  // no state changes.
  virtual Status step(const StepInput& in, Span<const float> grad, StepStats* stats) = 0;

  // This rank's model replica.
  virtual Span<const float> model() const = 0;
  // The model a run is evaluated on (the reference's Optimizer::evaluation_model); collective,
  // because for local-step algorithms it is the mean of the replicas.
  virtual Status evaluation_model(std::vector<float>& out) = 0;

  // All state a resumed run needs (model, momenta, error memories, server memories, schedules,
  // PowerSGD's Q), as bytes with a versioned header; restore() checks it and loses nothing on
  // error.
  virtual Status save(std::vector<std::uint8_t>& state) const = 0;
  virtual Status restore(Span<const std::uint8_t> state) = 0;
};

}  // namespace gradcomp::coll
