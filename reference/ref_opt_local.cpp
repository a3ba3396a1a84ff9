// The local-model engines of the reference pipeline (algorithms.md §3.2 S12/S13, §5.5-§5.8):
//   LocalStepsOptimizer  Family::kLocalSteps   qsparse-local (sync / async), pqasgd
//   PartialAvgOptimizer  Family::kPartialAvg   sparse-param-avg, cser, cser-pl, m-cser
//   DetachedOptimizer    Family::kDetached     def-a (DEF / DEF-A, authors' code)
//
// Arithmetic conventions (the MPI implementation must reproduce them bit for bit):
//   * state is fp32; every element update is computed in double from fp32 operands and rounded
//     once to fp32 where a line says so (the comments name the rounding points);
//   * a mean over workers sums the fp32 values as doubles in rank order 0..P-1, divides the
//     double sum by P and rounds once to fp32 (mean_rank_order);
//   * the lr-scaled local update is u = fp32(lr * v) with v the fp32 direction; x <- x - u and
//     any accumulator <- accumulator + u are then fp32 operations.
//   * randomness: a worker's compression uses CompressContext{t, tensor_id 0, rank i}; the
//     shared blocks of grbs/rbgs (partial averaging) use CompressContext{t, 0, rank 0} (their
//     stream has no rank in its key, so every rank draws the same block).
// Every step validates first and works on a copy of the state, committed only on success.
#include <cmath>
#include <utility>

#include "ref_opt_common.hpp"

namespace gradcomp::ref::detail {
namespace {

using Vec = std::vector<float>;

// The lr-scaled update fp32(lr * v).
inline float lr_scaled(double lr, float v) {
  return static_cast<float>(lr * static_cast<double>(v));
}

// Compressors whose messages can be summed value by value (a shared support or dense), so one
// allreduce carries them; every other compressor needs an allgather of the messages.
bool allreduce_compatible(const CompressorDesc& d) {
  switch (d.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kFp16:
    case CompressorKind::kBf16:
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs:
    case CompressorKind::kPowerSgd: return true;
    case CompressorKind::kRandK: return d.indices == IndexMode::kShared;
    default: return false;
  }
}

// Bytes of a dense fp32 vector of n elements: the identity compressor's payload (32 + 4n).
std::uint64_t dense_bytes(std::uint64_t n) {
  CompressorDesc identity;
  identity.kind = CompressorKind::kIdentity;
  identity.n = n;
  return payload_bytes(identity);
}

// Accounting of one exchange in which every worker sends a payload of bytes[i] through the
// collective `desc` needs (brief: "Communication accounting"). Adds to *comm.
void account_exchange(const CompressorDesc& desc, const std::vector<std::uint64_t>& bytes,
                      CommRecord* comm) {
  if (comm == nullptr) return;
  const std::size_t p = bytes.size();
  std::uint64_t total = 0;
  for (std::uint64_t b : bytes) total += b;
  for (std::size_t i = 0; i < p; ++i) {
    comm->up[i] += bytes[i];
    // allreduce: the worker receives the reduced buffer (same size); allgather: the others'.
    comm->down[i] += allreduce_compatible(desc) ? bytes[i] : total - bytes[i];
  }
}

void reset_comm(CommRecord* comm, std::uint32_t workers) {
  if (comm == nullptr) return;
  comm->up.assign(workers, 0);
  comm->down.assign(workers, 0);
}

// The shared block of a grbs/rbgs compressor at step t as a 0/1 mask: D(C(ones)) is 1 exactly
// on the block (the compressors copy the selected values unscaled) and 0 elsewhere. *bytes = the
// payload each worker sends for that block (the count depends only on the shared draws).
Status shared_block(const CompressorDesc& desc, std::uint32_t step, std::vector<bool>& mask,
                    std::uint64_t* bytes) {
  const Vec ones(desc.n, 1.0f);
  Vec q;
  GRADCOMP_TRY(compress_roundtrip(desc, step_context(step, 0), Span<const float>(ones), q, bytes));
  mask.assign(desc.n, false);
  for (std::uint64_t j = 0; j < desc.n; ++j) mask[j] = q[j] != 0.0f;
  return Status::success();
}

// The lr-free local momentum update with weight decay inside: d = double(g) + lambda * double(x);
// m = fp32(mu * double(m) + d). Returns d.
inline double momentum_step(double mu, double lambda, float g, float x, float& m) {
  const double d = static_cast<double>(g) + lambda * static_cast<double>(x);
  m = static_cast<float>(mu * static_cast<double>(m) + d);
  return d;
}

bool slot_present(const CompressorDesc& d) {
  return !(d.kind == CompressorKind::kIdentity && d.n == 0);
}

// ---- common part -------------------------------------------------------------------------------

class LocalOptimizerBase : public Optimizer {
 public:
  LocalOptimizerBase(const PipelineConfig& config, std::uint32_t workers, Span<const float> x0)
      : config_(config), workers_(workers), n_(x0.size()) {}

  const PipelineConfig& config() const override { return config_; }
  std::uint32_t workers() const override { return workers_; }
  std::uint64_t size() const override { return n_; }
  Span<const float> gradient_point(std::uint32_t worker) const override { return model(worker); }
  std::vector<float> server_error() const override { return Vec(n_, 0.0f); }

 protected:
  Status check_step(const StepInput& in, const std::vector<Vec>& grads) const {
    GRADCOMP_CHECK_ARG(std::isfinite(in.lr), preset_name(config_.preset), ": lr = ", in.lr,
                       " is not finite");
    Status s = check_gradients(grads, workers_, n_);
    if (!s.ok()) return make_status(s.code(), preset_name(config_.preset), ": ", s.message());
    return Status::success();
  }
  // lambda of the local momentum update (0 without weight decay).
  double weight_decay() const {
    return config_.weight_decay_form == WeightDecayForm::kNone ? 0.0 : config_.weight_decay;
  }
  // Worker `worker`'s replica among the local models x (empty past the last worker).
  Span<const float> replica(const std::vector<Vec>& x, std::uint32_t worker) const {
    if (worker >= workers_) return {};
    return Span<const float>(x[worker]);
  }
  // Commits a successful step: the state becomes `next`, *comm (if any) the step's record.
  template <class State>
  static Status commit(State& state, State& next, CommRecord& record, CommRecord* comm) {
    state = std::move(next);
    if (comm != nullptr) *comm = std::move(record);
    return Status::success();
  }

  PipelineConfig config_;
  std::uint32_t workers_;
  std::uint64_t n_;
};

// ---- Family::kLocalSteps: Qsparse-local-SGD (§5.5) and PQASGD (§5.6) --------------------------
//
// Every step: x_i <- x_i - fp32(eta g_i).
// Sync step of worker i (synchronous: (t + 1) % H == 0 for all; async: (t + 1 + i) % H == 0):
//   Delta_i = fp32((double(a_i) - double(x_i)) + double(m_i))   drift against the worker's copy
//                                                              a_i of the global model + memory
//   c_i = D(C(Delta_i)) with CompressContext{t, 0, i}
//   m_i = Delta_i - c_i (ef) or 0
// synchronous: a <- fp32(double(a) - mean_rank_order(c)) ; x_i = a_i = a for every i
// asynchronous: workers syncing at t are applied one at a time in rank order, each against its
//   own a_i (the global model it last received): a <- fp32(double(a) - double(c_i) / P);
//   x_i = a_i = a (the master returns the current global model).
class LocalStepsOptimizer final : public LocalOptimizerBase {
 public:
  LocalStepsOptimizer(const PipelineConfig& config, std::uint32_t workers, Span<const float> x0)
      : LocalOptimizerBase(config, workers, x0) {
    const Vec x(x0.begin(), x0.end());
    s_.global = x;
    s_.x.assign(workers, x);
    s_.anchor.assign(workers, x);
    s_.memory.assign(workers, Vec(n_, 0.0f));
  }

  Span<const float> model(std::uint32_t worker) const override { return replica(s_.x, worker); }
  // [P] evaluated on the global model a (the master's model).
  std::vector<float> evaluation_model() const override { return s_.global; }
  // The memory m_i, in model units (lr-scaled).
  std::vector<float> worker_error(std::uint32_t worker) const override {
    return worker < workers_ ? s_.memory[worker] : Vec();
  }

  Status step(const StepInput& in, const std::vector<Vec>& grads, CommRecord* comm) override {
    GRADCOMP_TRY(check_step(in, grads));
    State next = s_;
    for (std::uint32_t i = 0; i < workers_; ++i)
      for (std::uint64_t j = 0; j < n_; ++j) next.x[i][j] -= lr_scaled(in.lr, grads[i][j]);

    const std::uint32_t period = config_.period;
    std::vector<bool> syncs(workers_, false);
    bool any = false;
    for (std::uint32_t i = 0; i < workers_; ++i) {
      const std::uint64_t offset = config_.async ? i : 0;
      syncs[i] = (static_cast<std::uint64_t>(in.step) + 1 + offset) % period == 0;
      any = any || syncs[i];
    }
    CommRecord record;
    reset_comm(&record, workers_);
    if (any) {
      std::vector<Vec> c(workers_);
      std::vector<std::uint64_t> bytes(workers_, 0);
      const double p = static_cast<double>(workers_);
      for (std::uint32_t i = 0; i < workers_; ++i) {
        if (!syncs[i]) continue;
        // Async: a_i is the model worker i received at its previous sync; the messages that
        // lower ranks apply to the master at this step do not reach it before it sends.
        Vec delta(n_);
        for (std::uint64_t j = 0; j < n_; ++j) {
          delta[j] = static_cast<float>(
              (static_cast<double>(next.anchor[i][j]) - static_cast<double>(next.x[i][j])) +
              static_cast<double>(next.memory[i][j]));
        }
        GRADCOMP_TRY(compress_roundtrip(config_.up, step_context(in.step, i),
                                        Span<const float>(delta), c[i], &bytes[i]));
        for (std::uint64_t j = 0; j < n_; ++j)
          next.memory[i][j] = config_.error_feedback ? delta[j] - c[i][j] : 0.0f;
        if (config_.async) {
          // The master applies this message at once and returns its current model.
          for (std::uint64_t j = 0; j < n_; ++j) {
            next.global[j] = static_cast<float>(static_cast<double>(next.global[j]) -
                                                static_cast<double>(c[i][j]) / p);
          }
          receive_global(next, i);
          record.up[i] += bytes[i];
          record.down[i] += dense_bytes(n_);  // [P] the master sends the dense global model
        }
      }
      if (!config_.async) {
        // Sum in rank order in double, divide by P, subtract in double, round once.
        for (std::uint64_t j = 0; j < n_; ++j) {
          next.global[j] =
              static_cast<float>(static_cast<double>(next.global[j]) - sum_rank_order(c, j) / p);
        }
        for (std::uint32_t i = 0; i < workers_; ++i) receive_global(next, i);
        account_exchange(config_.up, bytes, &record);
      }
    }
    return commit(s_, next, record, comm);
  }

 private:
  struct State {
    Vec global;               // a: the master's global model
    std::vector<Vec> x;       // x_i: local models
    std::vector<Vec> anchor;  // a_i: the global model worker i last received
    std::vector<Vec> memory;  // m_i: error-feedback memory (model units)
  };
  // Worker i receives the global model: x_i = a_i = a.
  static void receive_global(State& s, std::uint32_t i) {
    s.x[i] = s.global;
    s.anchor[i] = s.global;
  }
  State s_;
};

// ---- Family::kPartialAvg: sparse parameter averaging (§5.6) and the CSER family (§5.7) --------
//
// Local NAG with weight decay inside (MXNet NAG, lr-free momentum; mu = 0 and lambda = 0 give
// plain SGD, which is sparse-param-avg's local step):
//   d   = double(g_i) + lambda * double(x_i)
//   m_i = fp32(mu * double(m_i) + d)
//   u_i = fp32(eta * (mu * double(m_i) + d))       (uses the new m_i)
// form = code (authors' MXNet code; also sparse-param-avg and cser-pl):
//   x_i <- x_i - u_i; then B = block of C2 if (t + 1) % H == 0 and C2 is set, else of C1 (if
//   set); x_i[B] <- mean_rank_order_j x_j[B].
// form = paper2c (two-compressor form of §5.7), with the same local update u_i:
//   on B1 (block of C1): x_i <- x_i - mean_j u_j ; off B1: x_i <- x_i - u_i, e_i <- e_i - u_i
//   if (t + 1) % H == 0, on B2 (block of C2): x_i <- (x_i - e_i) + mean_j e_j ; e_i <- 0
//   (off B2 the algebra leaves x_i and e_i unchanged; they are not touched.)
class PartialAvgOptimizer final : public LocalOptimizerBase {
 public:
  PartialAvgOptimizer(const PipelineConfig& config, std::uint32_t workers, Span<const float> x0)
      : LocalOptimizerBase(config, workers, x0) {
    const Vec x(x0.begin(), x0.end());
    s_.x.assign(workers, x);
    s_.momentum.assign(workers, Vec(n_, 0.0f));
    s_.error.assign(workers, Vec(n_, 0.0f));
  }

  Span<const float> model(std::uint32_t worker) const override { return replica(s_.x, worker); }
  // The mean of the replicas (the CSER authors average all parameters before testing).
  std::vector<float> evaluation_model() const override { return mean_rank_order(s_.x, n_); }
  // paper2c: e_i; code form: x_i - mean_j x_j (the part of x_i not shared with the others).
  // Both in model units.
  std::vector<float> worker_error(std::uint32_t worker) const override {
    if (worker >= workers_) return {};
    if (config_.cser_form == CserForm::kPaper2c) return s_.error[worker];
    Vec mean = mean_rank_order(s_.x, n_);
    for (std::uint64_t j = 0; j < n_; ++j) mean[j] = s_.x[worker][j] - mean[j];
    return mean;
  }

  Status step(const StepInput& in, const std::vector<Vec>& grads, CommRecord* comm) override {
    GRADCOMP_TRY(check_step(in, grads));
    State next = s_;
    const double mu = config_.momentum_form == MomentumForm::kNone ? 0.0 : config_.momentum;
    const double lambda = weight_decay();
    std::vector<Vec> u(workers_, Vec(n_));
    for (std::uint32_t i = 0; i < workers_; ++i) {
      for (std::uint64_t j = 0; j < n_; ++j) {
        const double d = momentum_step(mu, lambda, grads[i][j], next.x[i][j], next.momentum[i][j]);
        u[i][j] = static_cast<float>(in.lr * (mu * static_cast<double>(next.momentum[i][j]) + d));
      }
    }
    const bool has_c1 = slot_present(config_.c1);
    const bool c2_step =
        slot_present(config_.c2) && (static_cast<std::uint64_t>(in.step) + 1) % config_.period == 0;
    CommRecord record;
    reset_comm(&record, workers_);
    std::vector<bool> mask;
    std::uint64_t bytes = 0;

    if (config_.cser_form == CserForm::kCode) {
      for (std::uint32_t i = 0; i < workers_; ++i)
        for (std::uint64_t j = 0; j < n_; ++j) next.x[i][j] -= u[i][j];
      if (c2_step || has_c1) {
        GRADCOMP_TRY(shared_block(c2_step ? config_.c2 : config_.c1, in.step, mask, &bytes));
        average_block(mask, next.x);
        account_block(c2_step ? config_.c2 : config_.c1, bytes, &record);
      }
    } else {
      if (has_c1) {
        GRADCOMP_TRY(shared_block(config_.c1, in.step, mask, &bytes));
        const Vec mean_u = mean_rank_order(u, n_);
        for (std::uint32_t i = 0; i < workers_; ++i) {
          for (std::uint64_t j = 0; j < n_; ++j) {
            if (mask[j]) {
              next.x[i][j] -= mean_u[j];
            } else {
              next.x[i][j] -= u[i][j];
              next.error[i][j] -= u[i][j];
            }
          }
        }
        account_block(config_.c1, bytes, &record);
      } else {
        for (std::uint32_t i = 0; i < workers_; ++i) {
          for (std::uint64_t j = 0; j < n_; ++j) {
            next.x[i][j] -= u[i][j];
            next.error[i][j] -= u[i][j];
          }
        }
      }
      if (c2_step) {
        GRADCOMP_TRY(shared_block(config_.c2, in.step, mask, &bytes));
        const Vec mean_e = mean_rank_order(next.error, n_);
        for (std::uint32_t i = 0; i < workers_; ++i) {
          for (std::uint64_t j = 0; j < n_; ++j) {
            if (!mask[j]) continue;
            next.x[i][j] = (next.x[i][j] - next.error[i][j]) + mean_e[j];
            next.error[i][j] = 0.0f;
          }
        }
        account_block(config_.c2, bytes, &record);
      }
    }
    return commit(s_, next, record, comm);
  }

 private:
  void average_block(const std::vector<bool>& mask, std::vector<Vec>& x) const {
    const Vec mean = mean_rank_order(x, n_);
    for (std::uint32_t i = 0; i < workers_; ++i)
      for (std::uint64_t j = 0; j < n_; ++j)
        if (mask[j]) x[i][j] = mean[j];
  }
  // One allreduce of the dense block: every worker sends and receives `bytes`.
  void account_block(const CompressorDesc& desc, std::uint64_t bytes, CommRecord* comm) const {
    account_exchange(desc, std::vector<std::uint64_t>(workers_, bytes), comm);
  }

  struct State {
    std::vector<Vec> x;         // local models
    std::vector<Vec> momentum;  // local NAG momenta (lr-free, never synchronised)
    std::vector<Vec> error;     // paper2c: e_i (model units); unused by form = code
  };
  State s_;
};

// ---- Family::kDetached: DEF / DEF-A as in the authors' code (§5.8) ----------------------------
//
// Every step, worker k: d = double(g_k) + lambda * double(x_k); m_k = fp32(mu * double(m_k) + d);
//   u_k = fp32(eta * m_k); x_k <- x_k - u_k; delta_k <- delta_k + u_k.
// Every period-th step ((t + 1) % period == 0):
//   c_k = D(C(delta_k)) with CompressContext{t, 0, k}; cbar = mean_rank_order(c)
//   e_k = delta_k - c_k ; w <- w - cbar ; x_k = fp32(double(w) - coeff * double(e_k)) ;
//   delta_k = e_k
// Evaluation on fp32(double(w) - mean_rank_order(e)) (computed in double from the fp32 mean).
class DetachedOptimizer final : public LocalOptimizerBase {
 public:
  DetachedOptimizer(const PipelineConfig& config, std::uint32_t workers, Span<const float> x0)
      : LocalOptimizerBase(config, workers, x0) {
    const Vec x(x0.begin(), x0.end());
    s_.w = x;
    s_.x.assign(workers, x);
    s_.momentum.assign(workers, Vec(n_, 0.0f));
    s_.delta.assign(workers, Vec(n_, 0.0f));
    s_.error.assign(workers, Vec(n_, 0.0f));
  }

  Span<const float> model(std::uint32_t worker) const override { return replica(s_.x, worker); }
  std::vector<float> evaluation_model() const override {
    const Vec mean_e = mean_rank_order(s_.error, n_);
    Vec out(n_);
    for (std::uint64_t j = 0; j < n_; ++j)
      out[j] = static_cast<float>(static_cast<double>(s_.w[j]) - static_cast<double>(mean_e[j]));
    return out;
  }
  // e_k in model units (lr-scaled): what was not sent at the last communication round.
  std::vector<float> worker_error(std::uint32_t worker) const override {
    return worker < workers_ ? s_.error[worker] : Vec();
  }

  Status step(const StepInput& in, const std::vector<Vec>& grads, CommRecord* comm) override {
    GRADCOMP_TRY(check_step(in, grads));
    State next = s_;
    const double mu = config_.momentum;
    const double lambda = weight_decay();
    for (std::uint32_t k = 0; k < workers_; ++k) {
      for (std::uint64_t j = 0; j < n_; ++j) {
        momentum_step(mu, lambda, grads[k][j], next.x[k][j], next.momentum[k][j]);
        const float u = lr_scaled(in.lr, next.momentum[k][j]);
        next.x[k][j] -= u;
        next.delta[k][j] += u;
      }
    }
    CommRecord record;
    reset_comm(&record, workers_);
    if ((static_cast<std::uint64_t>(in.step) + 1) % config_.period == 0) {
      std::vector<Vec> c(workers_);
      std::vector<std::uint64_t> bytes(workers_, 0);
      for (std::uint32_t k = 0; k < workers_; ++k) {
        GRADCOMP_TRY(compress_roundtrip(config_.up, step_context(in.step, k),
                                        Span<const float>(next.delta[k]), c[k], &bytes[k]));
      }
      const Vec cbar = mean_rank_order(c, n_);
      for (std::uint64_t j = 0; j < n_; ++j) next.w[j] -= cbar[j];
      for (std::uint32_t k = 0; k < workers_; ++k) {
        for (std::uint64_t j = 0; j < n_; ++j) {
          next.error[k][j] = next.delta[k][j] - c[k][j];
          next.x[k][j] = static_cast<float>(static_cast<double>(next.w[j]) -
                                            config_.detach * static_cast<double>(next.error[k][j]));
        }
        next.delta[k] = next.error[k];
      }
      account_exchange(config_.up, bytes, &record);
    }
    return commit(s_, next, record, comm);
  }

 private:
  struct State {
    Vec w;                      // global model (identical on all ranks)
    std::vector<Vec> x;         // local (detached) models
    std::vector<Vec> momentum;  // local heavy-ball momenta (lr-free)
    std::vector<Vec> delta;     // accumulated lr-scaled updates since the last round, + e_k
    std::vector<Vec> error;     // e_k after the last round
  };
  State s_;
};

}  // namespace

Result<std::unique_ptr<Optimizer>> make_local_optimizer(
    const PipelineConfig& config, std::uint32_t workers, Span<const float> x0,
    const std::vector<std::vector<std::uint64_t>>& /*shapes: already in the descriptors*/) {
  const char* name = preset_name(config.preset);
  GRADCOMP_CHECK_ARG(workers >= 1, name, ": need at least one worker");
  GRADCOMP_CHECK_ARG(config.period >= 1, name, ": period must be >= 1");
  switch (config.family) {
    case Family::kLocalSteps:
      GRADCOMP_CHECK_ARG(config.up.n == x0.size(), name, ": compressor has n = ", config.up.n,
                         ", the model ", x0.size());
      return std::unique_ptr<Optimizer>(new LocalStepsOptimizer(config, workers, x0));
    case Family::kPartialAvg:
      for (const CompressorDesc* slot : {&config.c1, &config.c2}) {
        if (!slot_present(*slot)) continue;
        GRADCOMP_CHECK_ARG(
            slot->kind == CompressorKind::kGrbs || slot->kind == CompressorKind::kRbgs, name,
            ": partial averaging needs a shared block sparsifier (grbs or rbgs), got ",
            compressor_name(slot->kind));
        GRADCOMP_CHECK_ARG(slot->n == x0.size(), name, ": block sparsifier has n = ", slot->n,
                           ", the model ", x0.size());
      }
      return std::unique_ptr<Optimizer>(new PartialAvgOptimizer(config, workers, x0));
    case Family::kDetached:
      GRADCOMP_CHECK_ARG(config.up.n == x0.size(), name, ": compressor has n = ", config.up.n,
                         ", the model ", x0.size());
      return std::unique_ptr<Optimizer>(new DetachedOptimizer(config, workers, x0));
    case Family::kSynchronous: break;
  }
  return make_status(StatusCode::kInvalidArgument, name,
                     ": not a local-model family (use make_synchronous_optimizer)");
}

}  // namespace gradcomp::ref::detail
