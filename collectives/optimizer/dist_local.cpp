// The local-model families on one rank: reference/ref_opt_local.cpp with the loop over workers
// replaced by this rank's worker and the means by collectives, formula for formula (keep the
// two in step; validation/mpi_opt checks every preset bit for bit).
//   LocalSteps   qsparse-local (sync / async), pqasgd: compressed model drift every H steps
//   PartialAvg   sparse-param-avg, cser, cser-pl, m-cser: means over the shared random block
//                only (the shared-support exchange: only the block's values travel)
//   Detached     def-a: compressed accumulated updates every `period` steps
#include <cmath>
#include <utility>

#include "dist_common.hpp"
#include "gradcomp/ref/compress.hpp"

namespace gradcomp::coll::detail {
namespace {

using Clock = std::chrono::steady_clock;

inline float lr_scaled(double lr, float v) {
  return static_cast<float>(lr * static_cast<double>(v));
}

bool slot_present(const CompressorDesc& d) {
  return !(d.kind == CompressorKind::kIdentity && d.n == 0);
}

inline double momentum_step(double mu, double lambda, float g, float x, float& m) {
  const double d = static_cast<double>(g) + lambda * static_cast<double>(x);
  m = static_cast<float>(mu * static_cast<double>(m) + d);
  return d;
}

class LocalBase : public DistBase {
 public:
  LocalBase(const Setup& setup, Communicator& comm) : DistBase(setup, comm), n_(setup.n) {}

 protected:
  double weight_decay() const {
    return setup_.config.weight_decay_form == WeightDecayForm::kNone ? 0.0
                                                                     : setup_.config.weight_decay;
  }
  Status check(const StepInput& in, Span<const float> grad) {
    return rc_.agree(check_local(in, grad, false), name());
  }
  // The direct exchange of Qsparse-local (async, and sync in deterministic mode; see
  // docs/distributed.md): compresses `in` on this rank (agreeing on errors; nullptr: this rank
  // sends nothing), allgathers the payloads and decodes them: c[r] for every sending rank.
  Status exchange(const CompressorDesc& desc, std::uint32_t step, const Vec* in,
                  std::vector<Vec>& c, StepStats& st) {
    auto t0 = Clock::now();
    std::vector<std::uint8_t> payload;
    Vec own;
    Status local;
    if (in != nullptr)
      local = compute_.roundtrip(desc, step_context(step, rank()), Span<const float>(*in), own,
                                 payload);
    GRADCOMP_TRY(rc_.agree(local, name()));
    st.seconds_compress += since(t0);
    t0 = Clock::now();
    std::vector<std::vector<std::uint8_t>> all;
    CollStats wire;
    GRADCOMP_TRY(rc_.allgather_payloads(payload, all, &wire));
    add_wire(st, wire);
    st.seconds_communicate += since(t0);
    c.assign(workers(), {});
    Status dec;
    for (std::uint32_t r = 0; r < workers() && dec.ok(); ++r) {
      if (all[r].empty()) continue;
      dec =
          compute_.decompress(desc, step_context(step, r), Span<const std::uint8_t>(all[r]), c[r]);
      if (!dec.ok())
        dec = make_status(dec.code(), name(), ": payload of rank ", r, ": ", dec.message());
    }
    return rc_.agree(dec, name());
  }
  // The mean over ranks of D(C(in)) through the collective options.algorithm resolves to;
  // own = this rank's D(C(in)).
  Status compressed_mean(const CompressorDesc& desc, std::uint32_t step, const Vec& in, Vec& own,
                         Vec& mean, StepStats& st) {
    auto algorithm =
        exchange_algorithm(setup_.options.algorithm, desc, workers(), Reduction::kMean);
    if (!algorithm.ok()) return algorithm.status();  // identical on every rank
    auto t0 = Clock::now();
    const CompressContext ctx = step_context(step, rank());
    std::vector<std::uint8_t> payload;
    GRADCOMP_TRY(
        rc_.agree(compute_.roundtrip(desc, ctx, Span<const float>(in), own, payload), name()));
    st.seconds_compress += since(t0);
    return message_mean(algorithm.value(), desc, ctx, payload, own, mean, st);
  }
  std::uint64_t n_;
};

// ---- Family::kLocalSteps -----------------------------------------------------------------------
class LocalStepsEngine final : public LocalBase {
 public:
  LocalStepsEngine(const Setup& setup, Communicator& comm, Span<const float> x0)
      : LocalBase(setup, comm) {
    s_.global.assign(x0.begin(), x0.end());
    s_.x = s_.global;
    s_.anchor = s_.global;
    s_.memory.assign(n_, 0.0f);
  }
  Span<const float> gradient_point() const override { return s_.x; }
  Span<const float> model() const override { return s_.x; }
  Status evaluation_model(std::vector<float>& out) override {
    out = s_.global;
    return Status::success();
  }

  Status step(const StepInput& in, Span<const float> grad, StepStats* stats) override {
    GRADCOMP_TRY(check(in, grad));
    const PipelineConfig& c = setup_.config;
    StepStats st;
    State next = s_;
    auto t0 = Clock::now();
    for (std::uint64_t j = 0; j < n_; ++j) next.x[j] -= lr_scaled(in.lr, grad[j]);
    st.seconds_update += since(t0);
    std::vector<bool> syncs(workers(), false);
    bool any = false;
    for (std::uint32_t i = 0; i < workers(); ++i) {
      const std::uint64_t offset = c.async ? i : 0;
      syncs[i] = (static_cast<std::uint64_t>(in.step) + 1 + offset) % c.period == 0;
      any = any || syncs[i];
    }
    if (any) {
      const double p = static_cast<double>(workers());
      Vec delta;
      if (syncs[rank()]) {
        delta.resize(n_);
        for (std::uint64_t j = 0; j < n_; ++j) {
          delta[j] = static_cast<float>(
              (static_cast<double>(next.anchor[j]) - static_cast<double>(next.x[j])) +
              static_cast<double>(next.memory[j]));
        }
      }
      if (!c.async && setup_.options.mode == ReductionMode::kFast) {
        // Fast: the mean of the decoded drifts through the compressed collective.
        Vec own, mean;
        GRADCOMP_TRY(compressed_mean(c.up, in.step, delta, own, mean, st));
        for (std::uint64_t j = 0; j < n_; ++j) {
          next.memory[j] = c.error_feedback ? delta[j] - own[j] : 0.0f;
          next.global[j] = static_cast<float>(static_cast<double>(next.global[j]) -
                                              static_cast<double>(mean[j]));
        }
        next.x = next.global;
        next.anchor = next.global;
      } else {
        // Deterministic (and async): the reference subtracts the unrounded double sum / P from
        // the global model, which a mean rounded to f32 by a collective cannot reproduce.
        std::vector<Vec> cs;
        GRADCOMP_TRY(exchange(c.up, in.step, syncs[rank()] ? &delta : nullptr, cs, st));
        if (syncs[rank()]) {
          for (std::uint64_t j = 0; j < n_; ++j)
            next.memory[j] = c.error_feedback ? delta[j] - cs[rank()][j] : 0.0f;
        }
        if (c.async) {
          // Messages applied one at a time in rank order; this rank takes the model right
          // after its own.
          for (std::uint32_t i = 0; i < workers(); ++i) {
            if (!syncs[i]) continue;
            for (std::uint64_t j = 0; j < n_; ++j)
              next.global[j] = static_cast<float>(static_cast<double>(next.global[j]) -
                                                  static_cast<double>(cs[i][j]) / p);
            if (i == rank()) {
              next.x = next.global;
              next.anchor = next.global;
            }
          }
        } else {
          for (std::uint64_t j = 0; j < n_; ++j) {
            double sum = 0.0;
            for (const Vec& row : cs) sum += static_cast<double>(row[j]);
            next.global[j] = static_cast<float>(static_cast<double>(next.global[j]) - sum / p);
          }
          next.x = next.global;
          next.anchor = next.global;
        }
      }
    }
    s_ = std::move(next);
    if (stats) *stats = st;
    return Status::success();
  }

 private:
  struct State {
    Vec global, x, anchor, memory;
  };
  void write_state(Writer& w) const override {
    for (const Vec* v : {&s_.global, &s_.x, &s_.anchor, &s_.memory}) w.vec(*v);
  }
  Status read_state(Reader& r) override {
    State t;
    GRADCOMP_TRY(r.vec(t.global, n_, false, "global model"));
    GRADCOMP_TRY(r.vec(t.x, n_, false, "local model"));
    GRADCOMP_TRY(r.vec(t.anchor, n_, false, "anchor"));
    GRADCOMP_TRY(r.vec(t.memory, n_, false, "memory"));
    staged_ = std::move(t);
    return Status::success();
  }
  void commit_staged() override { s_ = std::move(staged_); }
  State s_, staged_;
};

// ---- Family::kPartialAvg -----------------------------------------------------------------------
class PartialAvgEngine final : public LocalBase {
 public:
  PartialAvgEngine(const Setup& setup, Communicator& comm, Span<const float> x0)
      : LocalBase(setup, comm) {
    s_.x.assign(x0.begin(), x0.end());
    s_.momentum.assign(n_, 0.0f);
    s_.error.assign(n_, 0.0f);
  }
  Span<const float> gradient_point() const override { return s_.x; }
  Span<const float> model() const override { return s_.x; }
  Status evaluation_model(std::vector<float>& out) override {
    StepStats unused;
    return dense_mean(s_.x, out, unused);
  }

  Status step(const StepInput& in, Span<const float> grad, StepStats* stats) override {
    GRADCOMP_TRY(check(in, grad));
    const PipelineConfig& c = setup_.config;
    StepStats st;
    State next = s_;
    auto t0 = Clock::now();
    const double mu = c.momentum_form == MomentumForm::kNone ? 0.0 : c.momentum;
    const double lambda = weight_decay();
    Vec u(n_);
    for (std::uint64_t j = 0; j < n_; ++j) {
      const double d = momentum_step(mu, lambda, grad[j], next.x[j], next.momentum[j]);
      u[j] = static_cast<float>(in.lr * (mu * static_cast<double>(next.momentum[j]) + d));
    }
    st.seconds_update += since(t0);
    const bool has_c1 = slot_present(c.c1);
    const bool c2_step =
        slot_present(c.c2) && (static_cast<std::uint64_t>(in.step) + 1) % c.period == 0;
    std::vector<std::uint64_t> idx;
    if (c.cser_form == CserForm::kCode) {
      for (std::uint64_t j = 0; j < n_; ++j) next.x[j] -= u[j];
      if (c2_step || has_c1) {
        GRADCOMP_TRY(shared_block(c2_step ? c.c2 : c.c1, in.step, idx));
        Vec mean;
        GRADCOMP_TRY(block_mean(next.x, idx, mean, st));
        for (std::size_t k = 0; k < idx.size(); ++k) next.x[idx[k]] = mean[k];
      }
    } else {
      if (has_c1) {
        GRADCOMP_TRY(shared_block(c.c1, in.step, idx));
        Vec mean_u;
        GRADCOMP_TRY(block_mean(u, idx, mean_u, st));
        std::vector<bool> mask(n_, false);
        for (std::uint64_t j : idx) mask[j] = true;
        std::size_t k = 0;
        for (std::uint64_t j = 0; j < n_; ++j) {
          if (mask[j]) {
            next.x[j] -= mean_u[k++];
          } else {
            next.x[j] -= u[j];
            next.error[j] -= u[j];
          }
        }
      } else {
        for (std::uint64_t j = 0; j < n_; ++j) {
          next.x[j] -= u[j];
          next.error[j] -= u[j];
        }
      }
      if (c2_step) {
        GRADCOMP_TRY(shared_block(c.c2, in.step, idx));
        Vec mean_e;
        GRADCOMP_TRY(block_mean(next.error, idx, mean_e, st));
        for (std::size_t k = 0; k < idx.size(); ++k) {
          const std::uint64_t j = idx[k];
          next.x[j] = (next.x[j] - next.error[j]) + mean_e[k];
          next.error[j] = 0.0f;
        }
      }
    }
    s_ = std::move(next);
    if (stats) *stats = st;
    return Status::success();
  }

 private:
  // The shared block of grbs/rbgs at step t (the reference's shared_block): the indices where
  // D(C(ones)) is non-zero, with ctx {t, 0, rank 0}, identical on every rank.
  Status shared_block(const CompressorDesc& desc, std::uint32_t step,
                      std::vector<std::uint64_t>& idx) {
    const Vec ones(desc.n, 1.0f);
    Vec q;
    std::vector<std::uint8_t> payload;
    Status local =
        compute_.roundtrip(desc, step_context(step, 0), Span<const float>(ones), q, payload);
    GRADCOMP_TRY(rc_.agree(local, name()));
    idx.clear();
    for (std::uint64_t j = 0; j < desc.n; ++j)
      if (q[j] != 0.0f) idx.push_back(j);
    return Status::success();
  }
  // The mean over ranks of v on the block: only the block's values travel (the shared-support
  // exchange: every rank knows the block, so the values are summable), through
  // dense_allreduce_mean of the block's values.
  Status block_mean(const Vec& v, const std::vector<std::uint64_t>& idx, Vec& mean, StepStats& st) {
    Vec vals(idx.size());
    for (std::size_t k = 0; k < idx.size(); ++k) vals[k] = v[idx[k]];
    return dense_mean(vals, mean, st);
  }

  struct State {
    Vec x, momentum, error;
  };
  void write_state(Writer& w) const override {
    for (const Vec* v : {&s_.x, &s_.momentum, &s_.error}) w.vec(*v);
  }
  Status read_state(Reader& r) override {
    State t;
    GRADCOMP_TRY(r.vec(t.x, n_, false, "local model"));
    GRADCOMP_TRY(r.vec(t.momentum, n_, false, "momentum"));
    GRADCOMP_TRY(r.vec(t.error, n_, false, "error"));
    staged_ = std::move(t);
    return Status::success();
  }
  void commit_staged() override { s_ = std::move(staged_); }
  State s_, staged_;
};

// ---- Family::kDetached -------------------------------------------------------------------------
class DetachedEngine final : public LocalBase {
 public:
  DetachedEngine(const Setup& setup, Communicator& comm, Span<const float> x0)
      : LocalBase(setup, comm) {
    s_.w.assign(x0.begin(), x0.end());
    s_.x = s_.w;
    s_.momentum.assign(n_, 0.0f);
    s_.delta.assign(n_, 0.0f);
    s_.error.assign(n_, 0.0f);
  }
  Span<const float> gradient_point() const override { return s_.x; }
  Span<const float> model() const override { return s_.x; }
  Status evaluation_model(std::vector<float>& out) override {
    Vec mean_e;
    StepStats unused;
    GRADCOMP_TRY(dense_mean(s_.error, mean_e, unused));
    out.assign(n_, 0.0f);
    for (std::uint64_t j = 0; j < n_; ++j)
      out[j] = static_cast<float>(static_cast<double>(s_.w[j]) - static_cast<double>(mean_e[j]));
    return Status::success();
  }

  Status step(const StepInput& in, Span<const float> grad, StepStats* stats) override {
    GRADCOMP_TRY(check(in, grad));
    const PipelineConfig& c = setup_.config;
    StepStats st;
    State next = s_;
    const double mu = c.momentum;
    const double lambda = weight_decay();
    auto t0 = Clock::now();
    for (std::uint64_t j = 0; j < n_; ++j) {
      momentum_step(mu, lambda, grad[j], next.x[j], next.momentum[j]);
      const float u = lr_scaled(in.lr, next.momentum[j]);
      next.x[j] -= u;
      next.delta[j] += u;
    }
    st.seconds_update += since(t0);
    if ((static_cast<std::uint64_t>(in.step) + 1) % c.period == 0) {
      Vec own, cbar;
      GRADCOMP_TRY(compressed_mean(c.up, in.step, next.delta, own, cbar, st));
      for (std::uint64_t j = 0; j < n_; ++j) next.w[j] -= cbar[j];
      for (std::uint64_t j = 0; j < n_; ++j) {
        next.error[j] = next.delta[j] - own[j];
        next.x[j] = static_cast<float>(static_cast<double>(next.w[j]) -
                                       c.detach * static_cast<double>(next.error[j]));
      }
      next.delta = next.error;
    }
    s_ = std::move(next);
    if (stats) *stats = st;
    return Status::success();
  }

 private:
  struct State {
    Vec w, x, momentum, delta, error;
  };
  void write_state(Writer& w) const override {
    for (const Vec* v : {&s_.w, &s_.x, &s_.momentum, &s_.delta, &s_.error}) w.vec(*v);
  }
  Status read_state(Reader& r) override {
    State t;
    GRADCOMP_TRY(r.vec(t.w, n_, false, "global model"));
    GRADCOMP_TRY(r.vec(t.x, n_, false, "local model"));
    GRADCOMP_TRY(r.vec(t.momentum, n_, false, "momentum"));
    GRADCOMP_TRY(r.vec(t.delta, n_, false, "delta"));
    GRADCOMP_TRY(r.vec(t.error, n_, false, "error"));
    staged_ = std::move(t);
    return Status::success();
  }
  void commit_staged() override { s_ = std::move(staged_); }
  State s_, staged_;
};

}  // namespace

std::unique_ptr<DistributedOptimizer> make_local_engine(const Setup& setup, Communicator& comm,
                                                        Span<const float> x0) {
  switch (setup.config.family) {
    case Family::kLocalSteps:
      return std::unique_ptr<DistributedOptimizer>(new LocalStepsEngine(setup, comm, x0));
    case Family::kPartialAvg:
      return std::unique_ptr<DistributedOptimizer>(new PartialAvgEngine(setup, comm, x0));
    case Family::kDetached:
      return std::unique_ptr<DistributedOptimizer>(new DetachedEngine(setup, comm, x0));
    case Family::kSynchronous: break;
  }
  return nullptr;
}

}  // namespace gradcomp::coll::detail
