// The synchronous engine: the step pipeline S1..S11 of algorithms.md §3.2, once, driven by a
// PipelineConfig (Family::kSynchronous: sgdm, ef-sgd, signum-mv, signsgd-mv, dist-ef-sgdm, dgc,
// gmc, gmc+, powersgd). Every preset is a configuration of this one function (design.md,
// "one algorithm, one place"); docs/presets/<name>.md says which stages each one uses.
//
// Arithmetic (the contract the MPI "deterministic mode" must reproduce bit for bit):
//   * state (model, momenta, memories) is f32; every element-wise stage evaluates its formula
//     in double from the f32 operands and rounds to f32 once, when the result is stored;
//   * means over workers sum the f32 values in double in rank order 0..P-1, then divide by P,
//     then round to f32;
//   * norms (clipping) are accumulated in double in element order;
//   * compression uses CompressContext{step t, tensor_id 0, rank i} on worker i and
//     {step t, tensor_id 1, rank = owner index} on the server side (0 for a parameter server).
// No stage writes the optimizer's state: a step works on a copy and commits it at the end, so
// an error (bad sizes, NaN, a compressor error, an overflow) leaves everything unchanged.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "gradcomp/chunking.hpp"
#include "gradcomp/ref/powersgd.hpp"
#include "ref_opt_common.hpp"

namespace gradcomp::ref::detail {
namespace {

float to_f32(double v) { return static_cast<float>(v); }

// Compressors whose messages can be summed by an allreduce (a support every rank knows, or
// dense values): the worker receives a buffer of its own message's size (§6.1).
bool allreduce_compatible(const CompressorDesc& desc) {
  switch (desc.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kFp16:
    case CompressorKind::kBf16:
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs: return true;
    case CompressorKind::kRandK: return desc.indices == IndexMode::kShared;
    default: return false;
  }
}

// Everything a step changes. Vectors of stages a configuration does not use stay empty.
struct SyncState {
  std::vector<float> x;                    // the shared model (identical on every rank)
  std::vector<std::vector<float>> m;       // S2 momentum, per worker
  std::vector<std::vector<float>> e;       // S4-S6 error-feedback memory, per worker
  std::vector<float> m_post;               // S9 momentum (identical on every rank)
  std::vector<float> m_wd;                 // S10 weight-decay momentum (identical on every rank)
  std::vector<float> e_server;             // S8 server memory; chunked: owner j holds chunk j
  std::vector<float> last_aggregate;       // GMC: a_t = the aggregate of the previous step
  PowerSgdState powersgd;                  // PowerSGD aggregation: the shared warm-start Q
  std::vector<PowerSgdState> worker_q;     // powersgd used as a per-worker compressor
  std::vector<std::vector<float>> points;  // detached gradient points (GMC+ option A)
  bool has_eta_prev = false;               // eta_{-1} := eta_0
  double eta_prev = 0.0;                   // eta of the last step that was taken
};

class SynchronousOptimizer final : public Optimizer {
 public:
  SynchronousOptimizer(const PipelineConfig& config, std::uint32_t workers, Span<const float> x0)
      : config_(config), workers_(workers), n_(x0.size()) {
    state_.x.assign(x0.begin(), x0.end());
    const std::vector<float> zeros(n_, 0.0f);
    const bool pre_momentum = config_.momentum_placement == MomentumPlacement::kPre &&
                              config_.momentum_form != MomentumForm::kNone;
    if (pre_momentum) state_.m.assign(workers_, zeros);
    if (config_.error_feedback) state_.e.assign(workers_, zeros);
    if (config_.momentum_placement == MomentumPlacement::kPost &&
        config_.momentum_form != MomentumForm::kNone)
      state_.m_post = zeros;
    if (config_.weight_decay_form == WeightDecayForm::kHeavyBall ||
        config_.weight_decay_form == WeightDecayForm::kNesterov)
      state_.m_wd = zeros;
    if (config_.two_way) state_.e_server = zeros;
    if (config_.global_momentum) state_.last_aggregate = zeros;
    if (config_.up.kind == CompressorKind::kPowerSgd &&
        config_.aggregation != Aggregation::kPowerSgd)
      state_.worker_q.assign(workers_, PowerSgdState{});
    if (config_.detach > 0.0) state_.points.assign(workers_, state_.x);
  }

  const PipelineConfig& config() const override { return config_; }
  std::uint32_t workers() const override { return workers_; }
  std::uint64_t size() const override { return n_; }

  Span<const float> gradient_point(std::uint32_t worker) const override {
    if (state_.points.empty() || worker >= workers_) return state_.x;
    return state_.points[worker];
  }
  Span<const float> model(std::uint32_t) const override { return state_.x; }
  std::vector<float> evaluation_model() const override { return state_.x; }
  std::vector<float> worker_error(std::uint32_t worker) const override {
    if (state_.e.empty() || worker >= workers_) return std::vector<float>(n_, 0.0f);
    return state_.e[worker];
  }
  std::vector<float> server_error() const override {
    if (state_.e_server.empty()) return std::vector<float>(n_, 0.0f);
    return state_.e_server;
  }

  Status step(const StepInput& in, const std::vector<std::vector<float>>& grads,
              CommRecord* comm) override {
    const char* name = preset_name(config_.preset);
    GRADCOMP_TRY(check_gradients(grads, workers_, n_));
    GRADCOMP_CHECK_ARG(std::isfinite(in.lr) && in.lr >= 0.0, name,
                       ": learning rate must be finite and >= 0, got ", in.lr);
    CommRecord record;
    record.up.assign(workers_, 0);
    record.down.assign(workers_, 0);
    // §5.3 corner case [P]: eta_{t-1}/eta_t is undefined at eta_t = 0, so a rescaling
    // configuration skips the step: nothing is compressed or sent, and eta_prev is kept.
    if (in.lr == 0.0 && config_.lr_placement == LrPlacement::kOutsideRescale) {
      if (comm) *comm = std::move(record);
      return Status::success();
    }
    SyncState next = state_;
    GRADCOMP_TRY(run(in, grads, next, record));
    for (std::uint64_t j = 0; j < n_; ++j) {
      if (!std::isfinite(next.x[j])) {
        return make_status(StatusCode::kNonFinite, name, ": step ", in.step, " would make x[", j,
                           "] = ", next.x[j], "; no state was changed");
      }
    }
    state_ = std::move(next);
    if (comm) *comm = std::move(record);
    return Status::success();
  }

 private:
  // The whole pipeline on `s` (a copy of the state).
  Status run(const StepInput& in, const std::vector<std::vector<float>>& grads, SyncState& s,
             CommRecord& record) const {
    const double eta = in.lr;
    // S3: the factor applied to the memories (worker and server) before use.
    const double rescale = config_.lr_placement == LrPlacement::kOutsideRescale && s.has_eta_prev
                               ? s.eta_prev / eta
                               : 1.0;
    // S1..S4 on every worker: the vector p_i that goes into the compressor.
    std::vector<std::vector<float>> p(workers_);
    for (std::uint32_t i = 0; i < workers_; ++i) {
      p[i] = worker_input(grads[i], eta, rescale, s, i);
    }

    std::vector<float> aggregate(n_, 0.0f);
    if (config_.aggregation == Aggregation::kPowerSgd) {
      GRADCOMP_TRY(powersgd_aggregate(in, p, s, aggregate, record));
    } else {
      GRADCOMP_TRY(compress_and_aggregate(in, p, s, aggregate, record));
    }
    if (config_.two_way) GRADCOMP_TRY(server_step(in, rescale, s, aggregate, record));
    if (config_.global_momentum) s.last_aggregate = aggregate;  // a_{t+1} = c-bar_t (§5.8)

    apply_update(eta, s, aggregate);
    s.eta_prev = eta;
    s.has_eta_prev = true;
    if (!s.points.empty()) {
      // GMC+ option A (§5.8 [P]): worker k's next gradient is taken at w - detach * E_k with
      // E_k the memory in model units: lr-free memories times the eta that formed them.
      const double units = config_.lr_placement == LrPlacement::kInside ? 1.0 : eta;
      for (std::uint32_t i = 0; i < workers_; ++i)
        for (std::uint64_t j = 0; j < n_; ++j)
          s.points[i][j] = to_f32(static_cast<double>(s.x[j]) -
                                  config_.detach * units * static_cast<double>(s.e[i][j]));
    }
    return Status::success();
  }

  // S1 clipping, S2 momentum (PRE) or global momentum, S3 lr placement, S4 error feedback.
  std::vector<float> worker_input(const std::vector<float>& grad, double eta, double rescale,
                                  SyncState& s, std::uint32_t i) const {
    std::vector<float> g = grad;
    if (config_.clip > 0.0) {
      // S1 (§3.2, DGC [A-paper]): clip to tau * P^(-1/2). The DGC code's clip_grad_norm_ adds
      // 1e-6 to the norm; the spec's formula has none and is used here.
      double sq = 0.0;
      for (float v : g) sq += static_cast<double>(v) * v;
      const double norm = std::sqrt(sq);
      const double bound = config_.clip / std::sqrt(static_cast<double>(workers_));
      if (norm > bound) {
        const double factor = bound / norm;
        for (float& v : g) v = to_f32(v * factor);
      }
    }
    std::vector<float> u(n_);
    const double mu = config_.momentum;
    if (config_.global_momentum) {
      // GMC (§5.8 [P]): u = g + beta * a_t, a_t the last aggregate (lr-free units).
      for (std::uint64_t j = 0; j < n_; ++j)
        u[j] = to_f32(g[j] + mu * static_cast<double>(s.last_aggregate[j]));
    } else if (!s.m.empty()) {
      std::vector<float>& m = s.m[i];
      for (std::uint64_t j = 0; j < n_; ++j) {
        switch (config_.momentum_form) {
          case MomentumForm::kHeavyBall:
            m[j] = to_f32(mu * m[j] + g[j]);
            u[j] = m[j];
            break;
          case MomentumForm::kNesterov:
            // Also DGC's code variant u <- m(u + g); v += u + g: with its buffer U = mu * m the
            // two are the same recursion (U' = mu(U + g) = mu m', U' + g = g + mu m').
            m[j] = to_f32(mu * m[j] + g[j]);
            u[j] = to_f32(g[j] + mu * m[j]);
            break;
          case MomentumForm::kEma:
            m[j] = to_f32(mu * m[j] + (1.0 - mu) * g[j]);
            u[j] = m[j];
            break;
          case MomentumForm::kNone: u[j] = g[j]; break;
        }
      }
    } else {
      u = g;
    }
    if (config_.lr_placement == LrPlacement::kInside) {
      for (float& v : u) v = to_f32(eta * v);
    }
    if (!config_.error_feedback) return u;
    std::vector<float> p(n_);
    const std::vector<float>& e = s.e[i];
    for (std::uint64_t j = 0; j < n_; ++j) p[j] = to_f32(u[j] + rescale * e[j]);
    return p;
  }

  // The worker compressor of this step: DGC's warm-up density by epoch (§5.4.2).
  CompressorDesc worker_compressor(std::uint32_t epoch) const {
    CompressorDesc desc = config_.up;
    if (epoch < config_.warmup.size()) {
      desc.density = config_.warmup[epoch];
      desc.k = -1;
    }
    return desc;
  }

  // S5 compress, S6 memory update and momentum-factor masking, S7 mean or majority vote.
  Status compress_and_aggregate(const StepInput& in, const std::vector<std::vector<float>>& p,
                                SyncState& s, std::vector<float>& aggregate,
                                CommRecord& record) const {
    const CompressorDesc desc = worker_compressor(in.epoch);
    // TernGrad scaler sharing: every worker uses the max over workers of the local scalers.
    std::vector<float> shared_scalers;
    if (desc.kind == CompressorKind::kTernGrad && desc.scaler == TernScaler::kShared) {
      for (std::uint32_t i = 0; i < workers_; ++i) {
        std::vector<float> local;
        GRADCOMP_TRY(terngrad_local_scalers(desc, p[i], local));
        if (shared_scalers.empty()) shared_scalers.assign(local.size(), 0.0f);
        for (std::size_t b = 0; b < local.size(); ++b)
          shared_scalers[b] = std::max(shared_scalers[b], local[b]);
      }
    }
    std::vector<std::vector<float>> q(workers_);
    for (std::uint32_t i = 0; i < workers_; ++i) {
      CompressContext ctx = step_context(in.step, i);
      ctx.shared_scalers = shared_scalers;
      ctx.powersgd = s.worker_q.empty() ? nullptr : &s.worker_q[i];
      GRADCOMP_TRY(compress_roundtrip(desc, ctx, p[i], q[i], &record.up[i]));
      if (config_.error_feedback) {
        for (std::uint64_t j = 0; j < n_; ++j)
          s.e[i][j] = to_f32(p[i][j] - static_cast<double>(q[i][j]));
      }
      if (config_.momentum_masking && !s.m.empty()) {
        // DGC: zero the momentum where a value was sent. The message drops zero values, so
        // the support actually sent is exactly {j : q_j != 0} [A-code].
        for (std::uint64_t j = 0; j < n_; ++j)
          if (q[i][j] != 0.0f) s.m[i][j] = 0.0f;
      }
    }

    if (config_.aggregation == Aggregation::kMajority) {
      // V = sgn0(sum_i sgn(q_i)) (§4.2); an even split votes 0 or +1 (tie policy).
      for (std::uint64_t j = 0; j < n_; ++j) {
        std::int64_t votes = 0;
        for (std::uint32_t i = 0; i < workers_; ++i) votes += q[i][j] >= 0.0f ? 1 : -1;
        aggregate[j] = votes > 0   ? 1.0f
                       : votes < 0 ? -1.0f
                                   : (config_.majority_tie == MajorityTie::kPlus ? 1.0f : 0.0f);
      }
      // One vote message comes back, the size of a sign message.
      for (std::uint32_t i = 0; i < workers_; ++i) record.down[i] = payload_bytes(desc);
    } else {
      mean_rank_order(q, 0, n_, aggregate);
      const bool allreduce = allreduce_compatible(desc);
      std::uint64_t total = 0;
      for (std::uint32_t i = 0; i < workers_; ++i) total += record.up[i];
      for (std::uint32_t i = 0; i < workers_; ++i)
        record.down[i] = allreduce ? record.up[i] : total - record.up[i];
    }
    return Status::success();
  }

  // PowerSGD aggregation (§4.11, §5.9 [A-code epfml]): per matrix segment
  //   P_i = M_i Q ; P = mean_i P_i ; P^ = orthogonalize(P) ; Q = mean_i M_i^T P^ ; out = P^ Q^T,
  // vectors: dense mean. Q starts from the shared N(0, 1) stream (tensor_id 0) and is kept
  // between steps with warm_start (the averaged Q, identical on every rank). e_i = send_i - out.
  Status powersgd_aggregate(const StepInput& in, const std::vector<std::vector<float>>& send,
                            SyncState& s, std::vector<float>& aggregate, CommRecord& record) const {
    const CompressorDesc& desc = config_.up;
    const std::vector<Segment> segments = tensor_segments(desc);
    const bool warm = desc.warm_start;
    if (warm && s.powersgd.q.empty()) s.powersgd.q.resize(segments.size());
    for (std::size_t seg = 0; seg < segments.size(); ++seg) {
      const Segment& part = segments[seg];
      if (part.shape.size() < 2) {
        mean_rank_order(send, part.offset, part.offset + part.size, aggregate);
        continue;
      }
      const std::uint64_t rows = part.shape[0];
      const std::uint64_t cols = part.size / rows;
      const std::uint64_t r = powersgd_effective_rank(rows, cols, desc.rank);
      std::vector<float> q;
      if (warm && !s.powersgd.q[seg].empty()) {
        q = s.powersgd.q[seg];
      } else {
        q.resize(cols * r);
        GRADCOMP_TRY(
            powersgd_initial_q(desc.seed, in.step, 0, static_cast<std::uint32_t>(seg), cols, r, q));
      }
      auto matrix = [&](std::uint32_t i) {
        return Span<const float>(send[i].data() + part.offset, part.size);
      };
      std::vector<std::vector<float>> parts(workers_, std::vector<float>(rows * r));
      for (std::uint32_t i = 0; i < workers_; ++i)
        GRADCOMP_TRY(matmul_mq(matrix(i), rows, cols, q, r, parts[i]));
      std::vector<float> p_hat(rows * r);
      mean_rank_order(parts, 0, rows * r, p_hat);
      GRADCOMP_TRY(orthogonalize(p_hat, rows, r, desc.eps));
      parts.assign(workers_, std::vector<float>(cols * r));
      for (std::uint32_t i = 0; i < workers_; ++i)
        GRADCOMP_TRY(matmul_mtp(matrix(i), rows, cols, p_hat, r, parts[i]));
      mean_rank_order(parts, 0, cols * r, q);
      GRADCOMP_TRY(matmul_pqt(p_hat, rows, q, cols, r,
                              Span<float>(aggregate.data() + part.offset, part.size)));
      if (warm) s.powersgd.q[seg] = std::move(q);
    }
    if (config_.error_feedback) {
      for (std::uint32_t i = 0; i < workers_; ++i)
        for (std::uint64_t j = 0; j < n_; ++j)
          s.e[i][j] = to_f32(static_cast<double>(send[i][j]) - aggregate[j]);
    }
    // Two allreduces (P, then Q; vectors dense): up and down are the payload of the
    // single-worker compressor (one 32-byte header for both rounds).
    for (std::uint32_t i = 0; i < workers_; ++i)
      record.up[i] = record.down[i] = payload_bytes(desc);
    return Status::success();
  }

  // The compressor an owner applies to its chunk: blocks = the worker blocks intersected with
  // the chunk (§5.3 [P]), written as one 1-D tensor segment per piece.
  CompressorDesc chunk_compressor(const ChunkRange& chunk) const {
    CompressorDesc desc = config_.down;
    const std::vector<Segment> blocks =
        desc.kind == CompressorKind::kBlockSign ? sign_blocks(desc) : tensor_segments(desc);
    desc.n = chunk.size();
    desc.block = 0;
    desc.shapes.clear();
    for (const Segment& b : blocks) {
      const std::uint64_t begin = std::max(b.offset, chunk.begin);
      const std::uint64_t end = std::min(b.offset + b.size, chunk.end);
      if (begin < end) desc.shapes.push_back({end - begin});
    }
    return desc;
  }

  // S8: two-way compression with server error feedback (§5.3 parameter server, §6.3 chunks).
  Status server_step(const StepInput& in, double rescale, SyncState& s,
                     std::vector<float>& aggregate, CommRecord& record) const {
    std::vector<ChunkRange> chunks;
    std::vector<CompressorDesc> descs;
    if (config_.server == ServerTopology::kParameterServer) {
      chunks.push_back({0, n_});
      descs.push_back(config_.down);
    } else {
      chunks = chunk_bounds(n_, workers_);
      for (const ChunkRange& c : chunks) descs.push_back(chunk_compressor(c));
    }
    std::uint64_t down = 0;
    for (std::uint32_t owner = 0; owner < chunks.size(); ++owner) {
      const ChunkRange& chunk = chunks[owner];
      if (chunk.size() == 0) continue;  // an empty chunk's owner sends nothing
      std::vector<float> server_in(chunk.size());
      for (std::uint64_t j = 0; j < chunk.size(); ++j) {
        const std::uint64_t at = chunk.begin + j;
        server_in[j] = to_f32(aggregate[at] + rescale * s.e_server[at]);
      }
      const CompressContext ctx = step_context(in.step, owner, 1);
      std::vector<float> out;
      std::uint64_t bytes = 0;
      GRADCOMP_TRY(compress_roundtrip(descs[owner], ctx, server_in, out, &bytes));
      for (std::uint64_t j = 0; j < chunk.size(); ++j) {
        const std::uint64_t at = chunk.begin + j;
        s.e_server[at] = to_f32(static_cast<double>(server_in[j]) - out[j]);
        aggregate[at] = out[j];
      }
      down += bytes;
    }
    // Workers receive the server's message (or every owner's chunk), not each other's.
    for (std::uint32_t i = 0; i < workers_; ++i) record.down[i] = down;
    return Status::success();
  }

  // S9 momentum after aggregation, S10 decoupled weight decay, S11 apply.
  void apply_update(double eta, SyncState& s, std::vector<float>& a) const {
    const double mu = config_.momentum;
    const double lambda = config_.weight_decay;
    // PowerSGD (epfml code): weight decay joins the reduced gradient before the momentum.
    const bool wd_before_momentum = config_.aggregation == Aggregation::kPowerSgd &&
                                    config_.powersgd_wd_after_reduce &&
                                    config_.weight_decay_form == WeightDecayForm::kPlain;
    if (wd_before_momentum) {
      for (std::uint64_t j = 0; j < n_; ++j) a[j] = to_f32(a[j] + lambda * s.x[j]);
    }
    if (!s.m_post.empty()) {
      // S9. Nesterov: PowerSGD's code adds the whole buffer (a <- a + m, §3.2 S9 [A-code]);
      // every other preset uses the usual a <- a + mu m (PyTorch / MXNet SGD, [P]).
      const bool add_whole_buffer = config_.nesterov_adds_buffer;
      for (std::uint64_t j = 0; j < n_; ++j) {
        float& m = s.m_post[j];
        switch (config_.momentum_form) {
          case MomentumForm::kHeavyBall:
            m = to_f32(mu * m + a[j]);
            a[j] = m;
            break;
          case MomentumForm::kNesterov:
            m = to_f32(mu * m + a[j]);
            a[j] = add_whole_buffer ? to_f32(a[j] + static_cast<double>(m)) : to_f32(a[j] + mu * m);
            break;
          case MomentumForm::kEma:
            m = to_f32(mu * m + (1.0 - mu) * a[j]);
            a[j] = m;
            break;
          case MomentumForm::kNone: break;
        }
      }
    }
    for (std::uint64_t j = 0; j < n_; ++j) {
      const double x = s.x[j];
      double w = 0.0;  // S10, in double; the stored buffer is f32
      switch (config_.weight_decay_form) {
        case WeightDecayForm::kNone: break;
        case WeightDecayForm::kPlain: w = wd_before_momentum ? 0.0 : lambda * x; break;
        case WeightDecayForm::kHeavyBall:
          s.m_wd[j] = to_f32(mu * s.m_wd[j] + lambda * x);
          w = s.m_wd[j];
          break;
        case WeightDecayForm::kNesterov:
          s.m_wd[j] = to_f32(mu * s.m_wd[j] + lambda * x);
          w = mu * s.m_wd[j] + lambda * x;
          break;
      }
      // S11: x <- x - eta (a + w)  |  INSIDE: x <- x - a - eta w (a is already lr-scaled).
      s.x[j] = config_.lr_placement == LrPlacement::kInside ? to_f32(x - a[j] - eta * w)
                                                            : to_f32(x - eta * (a[j] + w));
    }
  }

  PipelineConfig config_;
  std::uint32_t workers_;
  std::uint64_t n_;
  SyncState state_;
};

}  // namespace

Result<std::unique_ptr<Optimizer>> make_synchronous_optimizer(
    const PipelineConfig& config, std::uint32_t workers, Span<const float> x0,
    const std::vector<std::vector<std::uint64_t>>& shapes) {
  const char* name = preset_name(config.preset);
  GRADCOMP_CHECK_ARG(config.family == Family::kSynchronous, name,
                     ": not a synchronous configuration");
  GRADCOMP_CHECK_ARG(workers >= 1, name, ": need at least one worker");
  GRADCOMP_CHECK_ARG(config.up.n == x0.size() && (!config.two_way || config.down.n == x0.size()),
                     name, ": compressors are built for n = ", config.up.n, ", the model has ",
                     x0.size(), " elements");
  GRADCOMP_CHECK_ARG(config.up.shapes == shapes || config.up.kind == CompressorKind::kIdentity,
                     name, ": the compressor's tensor layout differs from the model's");
  GRADCOMP_CHECK_ARG(
      config.aggregation != Aggregation::kPowerSgd || config.up.kind == CompressorKind::kPowerSgd,
      name, ": PowerSGD aggregation needs the powersgd compressor");
  GRADCOMP_CHECK_ARG(config.detach == 0.0 || config.error_feedback, name,
                     ": detached gradient points need error feedback");
  GRADCOMP_CHECK_ARG(config.momentum >= 0.0 && config.momentum < 1.0, name,
                     ": momentum must be in [0, 1), got ", config.momentum);
  for (std::size_t i = 0; i < x0.size(); ++i) {
    if (!std::isfinite(x0[i])) {
      return make_status(StatusCode::kNonFinite, name, ": x0[", i, "] = ", x0[i], " is not finite");
    }
  }
  return std::unique_ptr<Optimizer>(new SynchronousOptimizer(config, workers, x0));
}

}  // namespace gradcomp::ref::detail
