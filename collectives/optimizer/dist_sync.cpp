// The synchronous family on one rank (sgdm, ef-sgd, signum-mv, signsgd-mv, dist-ef-sgdm, dgc,
// gmc, gmc+, powersgd): reference/ref_opt_sync.cpp with the loop over workers replaced by this
// rank's worker and the means by collectives. Every element-wise formula is the reference's,
// operation for operation (same double evaluation, same f32 rounding points), so that in
// deterministic mode the P ranks reproduce the simulator bit for bit. Keep the two in step: a
// change to a formula there must be made here (validation/mpi_opt checks every preset).
#include <algorithm>
#include <cmath>
#include <utility>

#include "dist_common.hpp"
#include "gradcomp/chunking.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/ref/powersgd.hpp"

namespace gradcomp::coll::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct SyncState {
  Vec x;               // the shared model
  Vec m;               // S2 momentum of this rank
  Vec e;               // S4-S6 error memory of this rank
  Vec m_post;          // S9 momentum (identical on every rank)
  Vec m_wd;            // S10 weight-decay momentum (identical on every rank)
  Vec e_server;        // S8 server memory; meaningful on the chunks this rank owns
  Vec last_aggregate;  // GMC
  PowerSgdState powersgd;
  Vec point;  // detached gradient point of this rank (GMC+ option A)
  bool has_eta_prev = false;
  double eta_prev = 0.0;
};

class SyncEngine final : public DistBase {
 public:
  SyncEngine(const Setup& setup, Communicator& comm, Span<const float> x0)
      : DistBase(setup, comm), n_(setup.n) {
    const PipelineConfig& c = setup_.config;
    s_.x.assign(x0.begin(), x0.end());
    const Vec zeros(n_, 0.0f);
    if (c.momentum_placement == MomentumPlacement::kPre && c.momentum_form != MomentumForm::kNone)
      s_.m = zeros;
    if (c.error_feedback) s_.e = zeros;
    if (c.momentum_placement == MomentumPlacement::kPost && c.momentum_form != MomentumForm::kNone)
      s_.m_post = zeros;
    if (c.weight_decay_form == WeightDecayForm::kHeavyBall ||
        c.weight_decay_form == WeightDecayForm::kNesterov)
      s_.m_wd = zeros;
    if (c.two_way) s_.e_server = zeros;
    if (c.global_momentum) s_.last_aggregate = zeros;
    if (c.detach > 0.0) s_.point = s_.x;
  }

  Span<const float> gradient_point() const override {
    return s_.point.empty() ? Span<const float>(s_.x) : Span<const float>(s_.point);
  }
  Span<const float> model() const override { return s_.x; }
  Status evaluation_model(std::vector<float>& out) override {
    out = s_.x;
    return Status::success();
  }

  Status step(const StepInput& in, Span<const float> grad, StepStats* stats) override {
    const PipelineConfig& c = setup_.config;
    GRADCOMP_TRY(rc_.agree(check_local(in, grad, true), name()));
    StepStats st;
    if (in.lr == 0.0 && c.lr_placement == LrPlacement::kOutsideRescale) {
      if (stats) *stats = st;  // §5.3 corner case: the reference skips the step
      return Status::success();
    }
    SyncState next = s_;
    GRADCOMP_TRY(run(in, grad, next, st));
    Status fin;
    for (std::uint64_t j = 0; j < n_ && fin.ok(); ++j) {
      if (!std::isfinite(next.x[j]))
        fin = make_status(StatusCode::kNonFinite, name(), ": step ", in.step, " would make x[", j,
                          "] = ", next.x[j], "; no state was changed");
    }
    GRADCOMP_TRY(rc_.agree(fin, name()));
    s_ = std::move(next);
    if (stats) *stats = st;
    return Status::success();
  }

 private:
  Status run(const StepInput& in, Span<const float> grad, SyncState& s, StepStats& st) {
    const PipelineConfig& c = setup_.config;
    auto t0 = Clock::now();
    const double eta = in.lr;
    const double rescale =
        c.lr_placement == LrPlacement::kOutsideRescale && s.has_eta_prev ? s.eta_prev / eta : 1.0;
    const Vec p = worker_input(grad, eta, rescale, s);
    st.seconds_compress += since(t0);

    Vec aggregate(n_, 0.0f);
    if (c.aggregation == Aggregation::kPowerSgd) {
      GRADCOMP_TRY(powersgd_aggregate(in, p, s, aggregate, st));
    } else {
      GRADCOMP_TRY(compress_and_aggregate(in, p, rescale, s, aggregate, st));
    }
    // The chunked server ran inside two_phase_allreduce; the parameter server runs here.
    if (c.two_way && c.server == ServerTopology::kParameterServer)
      GRADCOMP_TRY(server_step(in, rescale, s, aggregate, st));
    if (c.global_momentum) s.last_aggregate = aggregate;

    t0 = Clock::now();
    apply_update(eta, s, aggregate);
    s.eta_prev = eta;
    s.has_eta_prev = true;
    if (!s.point.empty()) {
      const double units = c.lr_placement == LrPlacement::kInside ? 1.0 : eta;
      for (std::uint64_t j = 0; j < n_; ++j)
        s.point[j] =
            to_f32(static_cast<double>(s.x[j]) - c.detach * units * static_cast<double>(s.e[j]));
    }
    st.seconds_update += since(t0);
    return Status::success();
  }

  // S1..S4 of this rank (the reference's worker_input, with P = the number of ranks).
  Vec worker_input(Span<const float> grad, double eta, double rescale, SyncState& s) const {
    const PipelineConfig& c = setup_.config;
    Vec g(grad.begin(), grad.end());
    if (c.clip > 0.0) {
      double sq = 0.0;
      for (float v : g) sq += static_cast<double>(v) * v;
      const double norm = std::sqrt(sq);
      const double bound = c.clip / std::sqrt(static_cast<double>(workers()));
      if (norm > bound) {
        const double factor = bound / norm;
        for (float& v : g) v = to_f32(v * factor);
      }
    }
    Vec u(n_);
    const double mu = c.momentum;
    if (c.global_momentum) {
      for (std::uint64_t j = 0; j < n_; ++j)
        u[j] = to_f32(g[j] + mu * static_cast<double>(s.last_aggregate[j]));
    } else if (!s.m.empty()) {
      Vec& m = s.m;
      for (std::uint64_t j = 0; j < n_; ++j) {
        switch (c.momentum_form) {
          case MomentumForm::kHeavyBall:
            m[j] = to_f32(mu * m[j] + g[j]);
            u[j] = m[j];
            break;
          case MomentumForm::kNesterov:
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
    if (c.lr_placement == LrPlacement::kInside) {
      for (float& v : u) v = to_f32(eta * v);
    }
    if (!c.error_feedback) return u;
    Vec p(n_);
    for (std::uint64_t j = 0; j < n_; ++j) p[j] = to_f32(u[j] + rescale * s.e[j]);
    return p;
  }

  CompressorDesc worker_compressor(std::uint32_t epoch) const {
    CompressorDesc desc = setup_.config.up;
    if (epoch < setup_.config.warmup.size()) {
      desc.density = setup_.config.warmup[epoch];
      desc.k = -1;
    }
    return desc;
  }

  // S5 compress, S6 memory and masking, S7 the mean (or majority vote, or the chunked server's
  // two-way mean) through the compressed collective options.algorithm resolves to.
  Status compress_and_aggregate(const StepInput& in, const Vec& p, double rescale, SyncState& s,
                                Vec& aggregate, StepStats& st) {
    const PipelineConfig& c = setup_.config;
    auto t0 = Clock::now();
    const CompressorDesc desc = worker_compressor(in.epoch);
    CollStats wire;
    Vec shared_scalers;
    if (desc.kind == CompressorKind::kTernGrad && desc.scaler == TernScaler::kShared) {
      Status local = ref::terngrad_local_scalers(desc, Span<const float>(p), shared_scalers);
      GRADCOMP_TRY(rc_.agree(local, name()));
      GRADCOMP_TRY(rc_.max_f32(shared_scalers, &wire));  // max is exact in any order
    }
    CompressContext ctx = step_context(in.step, rank());
    ctx.shared_scalers = Span<const float>(shared_scalers);
    std::vector<std::uint8_t> payload;
    Vec q_own;
    Status local = compute_.roundtrip(desc, ctx, Span<const float>(p), q_own, payload);
    GRADCOMP_TRY(rc_.agree(local, name()));
    if (c.error_feedback) {
      for (std::uint64_t j = 0; j < n_; ++j) s.e[j] = to_f32(p[j] - static_cast<double>(q_own[j]));
    }
    if (c.momentum_masking && !s.m.empty()) {
      for (std::uint64_t j = 0; j < n_; ++j)
        if (q_own[j] != 0.0f) s.m[j] = 0.0f;
    }
    st.seconds_compress += since(t0);
    add_wire(st, wire);

    const bool chunked = c.two_way && c.server == ServerTopology::kChunked;
    const Reduction reduction = c.aggregation == Aggregation::kMajority ? Reduction::kMajority
                                : chunked                               ? Reduction::kTwoWay
                                                                        : Reduction::kMean;
    // Deterministic from the configuration, so identical on every rank (create() checked it).
    auto algorithm = exchange_algorithm(setup_.options.algorithm, desc, workers(), reduction);
    if (!algorithm.ok()) return algorithm.status();
    if (algorithm.value() != Algorithm::kMajority && algorithm.value() != Algorithm::kTwoPhase)
      return message_mean(algorithm.value(), desc, ctx, payload, q_own, aggregate, st);

    t0 = Clock::now();
    auto impl = impl_for(desc);
    if (!impl.ok()) return impl.status();
    const Span<const std::uint8_t> msg(payload);
    wire = CollStats{};
    if (algorithm.value() == Algorithm::kMajority) {
      GRADCOMP_TRY(majority_vote(rc_.comm(), *impl.value(), desc, ctx, msg, Span<float>(aggregate),
                                 coll_options(), &wire));
    } else {
      // The server memory of the chunk this rank owns (chunk_bounds(n, P)[rank]).
      const std::vector<ChunkRange> chunks = chunk_bounds(n_, workers());
      const ChunkRange mine = n_ == 0 ? ChunkRange{} : chunks[rank()];
      GRADCOMP_TRY(two_phase_allreduce(rc_.comm(), *impl.value(), desc, c.down, ctx, msg,
                                       Span<float>(s.e_server.data() + mine.begin, mine.size()),
                                       rescale, Span<float>(aggregate), coll_options(), &wire));
    }
    add_wire(st, wire);
    st.seconds_communicate += since(t0);
    return Status::success();
  }

  // PowerSGD's two means per matrix segment (P, then Q), vectors dense, each through
  // dense_allreduce_mean; the power iteration itself runs the reference's matmul / orthogonalize.
  Status powersgd_aggregate(const StepInput& in, const Vec& send, SyncState& s, Vec& aggregate,
                            StepStats& st) {
    const PipelineConfig& c = setup_.config;
    const CompressorDesc& desc = c.up;
    const std::vector<Segment> segments = tensor_segments(desc);
    const bool warm = desc.warm_start;
    if (warm && s.powersgd.q.empty()) s.powersgd.q.resize(segments.size());
    for (std::size_t seg = 0; seg < segments.size(); ++seg) {
      const Segment& part = segments[seg];
      if (part.shape.size() < 2) {
        Vec local(send.begin() + static_cast<std::ptrdiff_t>(part.offset),
                  send.begin() + static_cast<std::ptrdiff_t>(part.offset + part.size));
        Vec mean;
        GRADCOMP_TRY(dense_mean(local, mean, st));
        std::copy(mean.begin(), mean.end(),
                  aggregate.begin() + static_cast<std::ptrdiff_t>(part.offset));
        continue;
      }
      const std::uint64_t rows = part.shape[0];
      const std::uint64_t cols = part.size / rows;
      const std::uint64_t r = ref::powersgd_effective_rank(rows, cols, desc.rank);
      Vec q;
      Status local;
      if (warm && !s.powersgd.q[seg].empty()) {
        q = s.powersgd.q[seg];
      } else {
        q.resize(cols * r);
        local = ref::powersgd_initial_q(desc.seed, in.step, 0, static_cast<std::uint32_t>(seg),
                                        cols, r, Span<float>(q));
      }
      const Span<const float> matrix(send.data() + part.offset, part.size);
      Vec part_p(rows * r);
      if (local.ok()) local = ref::matmul_mq(matrix, rows, cols, q, r, Span<float>(part_p));
      GRADCOMP_TRY(rc_.agree(local, name()));
      Vec p_hat;
      GRADCOMP_TRY(dense_mean(part_p, p_hat, st));
      local = ref::orthogonalize(Span<float>(p_hat), rows, r, desc.eps);
      Vec part_q(cols * r);
      if (local.ok()) local = ref::matmul_mtp(matrix, rows, cols, p_hat, r, Span<float>(part_q));
      GRADCOMP_TRY(rc_.agree(local, name()));
      GRADCOMP_TRY(dense_mean(part_q, q, st));
      local = ref::matmul_pqt(p_hat, rows, q, cols, r,
                              Span<float>(aggregate.data() + part.offset, part.size));
      GRADCOMP_TRY(rc_.agree(local, name()));
      if (warm) s.powersgd.q[seg] = std::move(q);
    }
    if (c.error_feedback) {
      for (std::uint64_t j = 0; j < n_; ++j)
        s.e[j] = to_f32(static_cast<double>(send[j]) - aggregate[j]);
    }
    return Status::success();
  }

  // S8 with a parameter server (server=ps): rank 0 adds its server memory to the workers' mean,
  // compresses with {step, tensor_id 1, rank 0} and sends the payload to every rank (an
  // allgatherv in which the other ranks contribute nothing); every rank decodes it. Not a
  // collective of compressed.hpp: two_phase_allreduce is the chunked topology.
  Status server_step(const StepInput& in, double rescale, SyncState& s, Vec& aggregate,
                     StepStats& st) {
    auto t0 = Clock::now();
    const CompressorDesc& desc = setup_.config.down;
    std::vector<std::uint8_t> payload;
    Status local;
    if (rank() == 0 && n_ > 0) {
      Vec server_in(n_);
      for (std::uint64_t j = 0; j < n_; ++j)
        server_in[j] = to_f32(aggregate[j] + rescale * s.e_server[j]);
      Vec out;
      local = compute_.roundtrip(desc, step_context(in.step, 0, 1), Span<const float>(server_in),
                                 out, payload);
      if (local.ok()) {
        for (std::uint64_t j = 0; j < n_; ++j)
          s.e_server[j] = to_f32(static_cast<double>(server_in[j]) - out[j]);
      }
    }
    GRADCOMP_TRY(rc_.agree(local, name()));
    st.seconds_compress += since(t0);
    t0 = Clock::now();
    std::vector<std::vector<std::uint8_t>> all;
    CollStats wire;
    GRADCOMP_TRY(rc_.allgather_payloads(payload, all, &wire));
    add_wire(st, wire);
    st.seconds_communicate += since(t0);
    if (n_ == 0) return Status::success();
    Vec out;
    Status dec = compute_.decompress(desc, step_context(in.step, 0, 1),
                                     Span<const std::uint8_t>(all[0]), out);
    if (!dec.ok())
      dec = make_status(dec.code(), name(), ": server payload of rank 0: ", dec.message());
    GRADCOMP_TRY(rc_.agree(dec, name()));
    std::copy(out.begin(), out.end(), aggregate.begin());
    return Status::success();
  }

  // S9..S11: the reference's apply_update.
  void apply_update(double eta, SyncState& s, Vec& a) const {
    const PipelineConfig& c = setup_.config;
    const double mu = c.momentum;
    const double lambda = c.weight_decay;
    const bool wd_before_momentum = c.aggregation == Aggregation::kPowerSgd &&
                                    c.powersgd_wd_after_reduce &&
                                    c.weight_decay_form == WeightDecayForm::kPlain;
    if (wd_before_momentum) {
      for (std::uint64_t j = 0; j < n_; ++j) a[j] = to_f32(a[j] + lambda * s.x[j]);
    }
    if (!s.m_post.empty()) {
      const bool add_whole_buffer = c.nesterov_adds_buffer;
      for (std::uint64_t j = 0; j < n_; ++j) {
        float& m = s.m_post[j];
        switch (c.momentum_form) {
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
      double w = 0.0;
      switch (c.weight_decay_form) {
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
      s.x[j] = c.lr_placement == LrPlacement::kInside ? to_f32(x - a[j] - eta * w)
                                                      : to_f32(x - eta * (a[j] + w));
    }
  }

  // ---- state
  // -------------------------------------------------------------------------------------
  void write_state(Writer& w) const override {
    for (const Vec* v :
         {&s_.x, &s_.m, &s_.e, &s_.m_post, &s_.m_wd, &s_.e_server, &s_.last_aggregate, &s_.point})
      w.vec(*v);
    w.u64(s_.powersgd.q.size());
    for (const Vec& q : s_.powersgd.q) w.vec(q);
    w.u32(s_.has_eta_prev ? 1 : 0);
    w.f64(s_.eta_prev);
  }
  Status read_state(Reader& r) override {
    SyncState t;
    // Each optional buffer must have the size this configuration gives it.
    struct Field {
      Vec* dst;
      const Vec* like;
      const char* name;
    };
    const Field fields[] = {{&t.x, &s_.x, "x"},
                            {&t.m, &s_.m, "momentum"},
                            {&t.e, &s_.e, "error"},
                            {&t.m_post, &s_.m_post, "post-momentum"},
                            {&t.m_wd, &s_.m_wd, "weight-decay momentum"},
                            {&t.e_server, &s_.e_server, "server error"},
                            {&t.last_aggregate, &s_.last_aggregate, "last aggregate"},
                            {&t.point, &s_.point, "gradient point"}};
    for (const Field& f : fields) GRADCOMP_TRY(r.vec(*f.dst, f.like->size(), false, f.name));
    std::uint64_t segs = 0;
    GRADCOMP_TRY(r.u64(segs));
    const std::uint64_t expect =
        setup_.config.aggregation == Aggregation::kPowerSgd && setup_.config.up.warm_start
            ? tensor_segments(setup_.config.up).size()
            : 0;
    GRADCOMP_CHECK_PAYLOAD(segs == expect || segs == 0, name(), ": state has ", segs,
                           " PowerSGD segments, expected ", expect);
    t.powersgd.q.resize(segs);
    for (std::uint64_t i = 0; i < segs; ++i) {
      std::uint64_t len = 0;
      Reader peek = r;
      GRADCOMP_TRY(peek.u64(len));
      GRADCOMP_CHECK_PAYLOAD(len <= n_ * 8, name(), ": PowerSGD Q of ", len, " elements");
      GRADCOMP_TRY(r.vec(t.powersgd.q[i], len, true, "PowerSGD Q"));
    }
    std::uint32_t has = 0;
    GRADCOMP_TRY(r.u32(has));
    GRADCOMP_CHECK_PAYLOAD(has <= 1, name(), ": bad eta flag");
    t.has_eta_prev = has == 1;
    GRADCOMP_TRY(r.f64(t.eta_prev));
    staged_ = std::move(t);
    return Status::success();
  }
  void commit_staged() override { s_ = std::move(staged_); }

  std::uint64_t n_;
  SyncState s_;
  SyncState staged_;
};

}  // namespace

std::unique_ptr<DistributedOptimizer> make_sync_engine(const Setup& setup, Communicator& comm,
                                                       Span<const float> x0) {
  return std::unique_ptr<DistributedOptimizer>(new SyncEngine(setup, comm, x0));
}

}  // namespace gradcomp::coll::detail
