// The P-worker simulator and its objectives (simulator.hpp, objectives.hpp, docs/simulator.md):
// determinism, analytic gradients against finite differences, the splits, data keying that does
// not depend on P, the lr schedule, checksums and byte accounting. Most tests run the simulator
// over a small stand-in optimizer (plain dense SGD, written here) so that they test the
// simulator alone; the accounting test runs the real sgdm preset.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "gradcomp/ref/objectives.hpp"
#include "gradcomp/ref/simulator.hpp"

namespace gradcomp::ref {
namespace {

// What the simulator handed the stand-in optimizer (kept outside it: simulate() destroys the
// optimizer before it returns).
struct StandInLog {
  std::vector<StepInput> inputs;
  std::vector<std::vector<float>> first_grads;  // the gradients of step 0
};

// Dense synchronous SGD without momentum: x <- x - lr * mean_i g_i (sum in rank order in
// double, then / P), 32 + 4n bytes each way.
class StandInSgd : public Optimizer {
 public:
  StandInSgd(std::uint32_t workers, Span<const float> x0, StandInLog* log)
      : workers_(workers), x_(x0.begin(), x0.end()), log_(log) {}

  const PipelineConfig& config() const override { return config_; }
  std::uint32_t workers() const override { return workers_; }
  std::uint64_t size() const override { return x_.size(); }
  Span<const float> gradient_point(std::uint32_t) const override { return x_; }
  Status step(const StepInput& in, const std::vector<std::vector<float>>& grads,
              CommRecord* comm) override {
    log_->inputs.push_back(in);
    if (log_->first_grads.empty()) log_->first_grads = grads;
    for (std::size_t j = 0; j < x_.size(); ++j) {
      double sum = 0.0;
      for (const auto& g : grads) sum += g[j];
      x_[j] = static_cast<float>(x_[j] - in.lr * (sum / workers_));
    }
    comm->up.assign(workers_, 32 + 4 * x_.size());
    comm->down = comm->up;
    return Status::success();
  }
  Span<const float> model(std::uint32_t) const override { return x_; }
  std::vector<float> evaluation_model() const override { return x_; }
  std::vector<float> worker_error(std::uint32_t) const override {
    return std::vector<float>(x_.size(), 0.0f);
  }
  std::vector<float> server_error() const override { return std::vector<float>(x_.size(), 0.0f); }

 private:
  PipelineConfig config_;
  std::uint32_t workers_;
  std::vector<float> x_;
  StandInLog* log_;
};

// A factory of StandInSgd optimizers that log into `log`.
struct StandIn {
  StandInLog log;
  OptimizerFactory factory() {
    return
        [this](
            const PresetDesc&, std::uint32_t workers, Span<const float> x0,
            const std::vector<std::vector<std::uint64_t>>&) -> Result<std::unique_ptr<Optimizer>> {
          log = StandInLog{};
          return std::unique_ptr<Optimizer>(std::make_unique<StandInSgd>(workers, x0, &log));
        };
  }
};

SimulatorConfig small_config(ObjectiveKind kind) {
  SimulatorConfig cfg;
  cfg.objective = kind;
  cfg.workers = 4;
  cfg.features = 6;
  cfg.outputs = 3;
  cfg.hidden = 5;
  cfg.samples_per_worker = 16;
  cfg.batch = 5;
  cfg.noise = 0.1;
  cfg.steps = 12;
  cfg.lr = 0.05;
  cfg.record_params = true;
  return cfg;
}

// The objective the simulator builds for cfg (docs/simulator.md), written out here so that the
// tests check the simulator against the documented mapping (cfg.samples = 0 in these tests).
ObjectiveSpec spec_of(const SimulatorConfig& cfg) {
  ObjectiveSpec spec;
  spec.kind = cfg.objective;
  spec.features = cfg.features;
  spec.outputs = cfg.outputs;
  spec.hidden = cfg.hidden;
  spec.samples = cfg.samples_per_worker * cfg.workers;
  spec.noise = cfg.noise;
  spec.seed = cfg.seed;
  return spec;
}

Trajectory run_or_fail(const SimulatorConfig& cfg, const OptimizerFactory& f) {
  auto r = simulate(cfg, f);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? r.value() : Trajectory{};
}

const ObjectiveKind kAllKinds[] = {ObjectiveKind::kLeastSquares, ObjectiveKind::kLogistic,
                                   ObjectiveKind::kMlp};

// ---- determinism ------------------------------------------------------------------------------

TEST(Simulator, SameConfigGivesIdenticalTrajectoryBytes) {
  for (ObjectiveKind kind : kAllKinds) {
    for (DataSplit split : {DataSplit::kIid, DataSplit::kNonIid}) {
      SimulatorConfig cfg = small_config(kind);
      cfg.split = split;
      StandIn a, b;
      const std::string ja = trajectory_json(cfg, run_or_fail(cfg, a.factory()));
      const std::string jb = trajectory_json(cfg, run_or_fail(cfg, b.factory()));
      EXPECT_EQ(ja, jb) << objective_name(kind) << " " << split_name(split);
      // A different seed gives a different run (the seed really keys the data).
      SimulatorConfig other = cfg;
      other.seed = cfg.seed + 1;
      StandIn c;
      EXPECT_NE(run_or_fail(other, c.factory()).steps.back().checksum,
                run_or_fail(cfg, a.factory()).steps.back().checksum);
    }
  }
}

TEST(Simulator, RealSgdmIsDeterministic) {
  SimulatorConfig cfg = small_config(ObjectiveKind::kMlp);
  auto a = simulate(cfg);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  auto b = simulate(cfg);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_EQ(trajectory_json(cfg, a.value()), trajectory_json(cfg, b.value()));
}

// ---- objectives: gradients against finite differences ----------------------------------------

// Central differences in double of the double loss of float parameters. The perturbation that
// really happens is fl(p +- h) - p, computed exactly in double; h = 2^-9 keeps the O(h^2)
// truncation error near 1e-6 for these smooth losses.
void check_gradient(const Dataset& data, const std::vector<float>& params,
                    const std::vector<std::uint32_t>& idx, const char* what) {
  double loss = 0.0;
  std::vector<double> grad;
  ASSERT_TRUE(evaluate(data, params, idx, &loss, &grad).ok());
  ASSERT_EQ(grad.size(), params.size());
  const float h = 1.0f / 512.0f;
  for (std::size_t i = 0; i < params.size(); ++i) {
    std::vector<float> plus = params, minus = params;
    plus[i] = params[i] + h;
    minus[i] = params[i] - h;
    double lp = 0.0, lm = 0.0;
    ASSERT_TRUE(evaluate(data, plus, idx, &lp, nullptr).ok());
    ASSERT_TRUE(evaluate(data, minus, idx, &lm, nullptr).ok());
    const double step = static_cast<double>(plus[i]) - static_cast<double>(minus[i]);
    const double fd = (lp - lm) / step;
    EXPECT_NEAR(grad[i], fd, 2e-5 * std::max(1.0, std::fabs(fd))) << what << " element " << i;
  }
}

TEST(Objectives, GradientsMatchFiniteDifferences) {
  for (ObjectiveKind kind : kAllKinds) {
    ObjectiveSpec spec;
    spec.kind = kind;
    spec.features = 5;
    spec.outputs = 3;
    spec.hidden = 4;
    spec.samples = 9;
    spec.noise = 0.3;
    spec.seed = 7;
    auto data = make_dataset(spec);
    ASSERT_TRUE(data.ok()) << data.status().to_string();
    std::vector<float> x = initial_point(spec);
    ASSERT_EQ(x.size(), parameter_count(spec));
    // Move off the initial point so that biases are non-zero too.
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += 0.25f * std::sin(static_cast<float>(i));
    check_gradient(data.value(), x, {}, objective_name(kind));
    check_gradient(data.value(), x, {4, 1, 7}, objective_name(kind));  // a minibatch
  }
}

TEST(Objectives, LeastSquaresOptimumIsThePlantedModel) {
  // With noise 0 the loss at W* is 0 (up to float rounding of the targets) and its gradient
  // vanishes; any other point has positive loss.
  ObjectiveSpec spec;
  spec.samples = 40;
  auto data = make_dataset(spec);
  ASSERT_TRUE(data.ok());
  double loss = 1.0;
  std::vector<double> grad;
  ASSERT_TRUE(evaluate(data.value(), data->planted, {}, &loss, &grad).ok());
  EXPECT_LT(loss, 1e-10);
  for (double g : grad) EXPECT_LT(std::fabs(g), 1e-5);
  double loss0 = 0.0;
  ASSERT_TRUE(evaluate(data.value(), initial_point(spec), {}, &loss0, nullptr).ok());
  EXPECT_GT(loss0, 1.0);
}

TEST(Objectives, LayoutAndBadInput) {
  ObjectiveSpec spec;
  spec.kind = ObjectiveKind::kMlp;
  spec.features = 3;
  spec.outputs = 2;
  spec.hidden = 4;
  const std::vector<std::vector<std::uint64_t>> mlp = {{4, 3}, {4}, {2, 4}, {2}};
  EXPECT_EQ(parameter_shapes(spec), mlp);
  EXPECT_EQ(parameter_count(spec), 12u + 4u + 8u + 2u);
  spec.kind = ObjectiveKind::kLogistic;
  EXPECT_EQ(parameter_count(spec), 3u * 2u + 2u);
  spec.outputs = 1;  // one class is not a classification problem
  EXPECT_EQ(make_dataset(spec).status().code(), StatusCode::kInvalidArgument);
  spec.outputs = 2;
  spec.noise = std::nan("");
  EXPECT_EQ(make_dataset(spec).status().code(), StatusCode::kInvalidArgument);
  spec.noise = 0;
  auto data = make_dataset(spec);
  ASSERT_TRUE(data.ok());
  double loss = 0;
  EXPECT_EQ(evaluate(data.value(), std::vector<float>(3), {}, &loss, nullptr).code(),
            StatusCode::kInvalidArgument);
  const std::vector<std::uint32_t> bad = {spec.samples};
  EXPECT_EQ(evaluate(data.value(), initial_point(spec), bad, &loss, nullptr).code(),
            StatusCode::kInvalidArgument);
}

// ---- splits -----------------------------------------------------------------------------------

std::vector<std::vector<double>> label_histograms(
    const Dataset& data, const std::vector<std::vector<std::uint32_t>>& s) {
  std::vector<std::vector<double>> h(s.size(), std::vector<double>(data.spec.outputs, 0.0));
  for (std::size_t w = 0; w < s.size(); ++w) {
    for (std::uint32_t i : s[w]) h[w][data.labels[i]] += 1.0 / static_cast<double>(s[w].size());
  }
  return h;
}

// Mean over workers of the total-variation distance between a worker's label histogram and
// the whole data set's.
double mean_tv_distance(const Dataset& data, const std::vector<std::vector<std::uint32_t>>& s) {
  const auto hist = label_histograms(data, s);
  std::vector<double> global(data.spec.outputs, 0.0);
  for (std::uint32_t l : data.labels) global[l] += 1.0 / static_cast<double>(data.labels.size());
  double total = 0.0;
  for (const auto& h : hist) {
    double tv = 0.0;
    for (std::size_t c = 0; c < h.size(); ++c) tv += 0.5 * std::fabs(h[c] - global[c]);
    total += tv;
  }
  return total / static_cast<double>(hist.size());
}

void expect_partition(const std::vector<std::vector<std::uint32_t>>& shards, std::uint32_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& s : shards) {
    EXPECT_EQ(s.size(), n / shards.size());  // n divisible by P in these tests
    for (std::uint32_t i : s) ++seen[i];
  }
  for (std::uint32_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "sample " << i;
}

TEST(Splits, NonIidIsLabelSkewedAndIidIsNot) {
  for (ObjectiveKind kind : kAllKinds) {
    ObjectiveSpec spec;
    spec.kind = kind;
    spec.outputs = 4;
    spec.samples = 800;
    auto data = make_dataset(spec);
    ASSERT_TRUE(data.ok());
    auto iid = split_samples(data.value(), 4, DataSplit::kIid, 0.8);
    auto skewed = split_samples(data.value(), 4, DataSplit::kNonIid, 0.8);
    auto disjoint = split_samples(data.value(), 4, DataSplit::kNonIid, 1.0);
    ASSERT_TRUE(iid.ok() && skewed.ok() && disjoint.ok());
    expect_partition(iid.value(), spec.samples);
    expect_partition(skewed.value(), spec.samples);
    expect_partition(disjoint.value(), spec.samples);
    // IID shards of 200 samples: each worker's histogram is within sampling noise of the
    // global one (TV of a 4-class multinomial sample of 200 is about 0.05). Skew 0.8: 80% of
    // each shard comes from one quarter of the label order, so even with unbalanced classes
    // (the teacher's labels here are about 34/20/35/11%) the TV distance is several times
    // larger (about 0.4 to 0.6).
    const double tv_iid = mean_tv_distance(data.value(), iid.value());
    const double tv_skewed = mean_tv_distance(data.value(), skewed.value());
    EXPECT_LT(tv_iid, 0.12) << objective_name(kind);
    EXPECT_GT(tv_skewed, 0.3) << objective_name(kind);
    EXPECT_GT(tv_skewed, 4 * tv_iid) << objective_name(kind);
    std::printf("[ labels ] %-8s mean TV distance to the global histogram: iid %.3f, noniid %.3f\n",
                objective_name(kind), tv_iid, tv_skewed);
    // Skew 1: worker w's labels all lie at or below worker w+1's (contiguous label ranges).
    for (std::size_t w = 0; w + 1 < disjoint->size(); ++w) {
      std::uint32_t max_w = 0, min_next = spec.outputs;
      for (std::uint32_t i : disjoint.value()[w]) max_w = std::max(max_w, data->labels[i]);
      for (std::uint32_t i : disjoint.value()[w + 1])
        min_next = std::min(min_next, data->labels[i]);
      EXPECT_LE(max_w, min_next) << objective_name(kind) << " worker " << w;
    }
  }
}

TEST(Splits, Minibatches) {
  std::vector<std::uint32_t> shard(20);
  std::iota(shard.begin(), shard.end(), 100u);
  auto full = minibatch(shard, 0, 3, 5, 1);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full.value(), shard);  // batch 0 = the whole shard, in order
  auto a = minibatch(shard, 8, 3, 5, 1);
  auto again = minibatch(shard, 8, 3, 5, 1);
  ASSERT_TRUE(a.ok() && again.ok());
  EXPECT_EQ(a.value(), again.value());
  const std::set<std::uint32_t> distinct(a->begin(), a->end());
  EXPECT_EQ(distinct.size(), 8u);
  for (std::uint32_t i : a.value()) EXPECT_TRUE(i >= 100 && i < 120);
  // Keyed by step and by worker.
  EXPECT_NE(minibatch(shard, 8, 3, 6, 1).value(), a.value());
  EXPECT_NE(minibatch(shard, 8, 3, 5, 2).value(), a.value());
  EXPECT_EQ(minibatch(shard, 21, 3, 5, 1).status().code(), StatusCode::kInvalidArgument);
}

// ---- data independent of P --------------------------------------------------------------------

TEST(Simulator, DataDoesNotDependOnTheNumberOfWorkers) {
  // Sample s, the planted model and x0 are pure functions of (seed, s): a larger data set
  // (more workers at the same samples_per_worker) extends the smaller one.
  for (ObjectiveKind kind : kAllKinds) {
    ObjectiveSpec small;
    small.kind = kind;
    small.samples = 64;
    ObjectiveSpec large = small;
    large.samples = 256;
    auto a = make_dataset(small);
    auto b = make_dataset(large);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(std::equal(a->x.begin(), a->x.end(), b->x.begin()));
    EXPECT_TRUE(std::equal(a->y.begin(), a->y.end(), b->y.begin()));
    EXPECT_EQ(a->planted, b->planted);
    EXPECT_EQ(initial_point(small), initial_point(large));
    if (kind != ObjectiveKind::kLeastSquares) {  // LS labels are buckets of the whole set
      EXPECT_TRUE(std::equal(a->labels.begin(), a->labels.end(), b->labels.begin()));
    }
  }
  // With `samples` fixed the objective is the same for every P: same initial loss, and
  // full-batch dense SGD gives the same trajectory up to float rounding (the mean of equal-size
  // shard means is the global mean; only the summation order differs).
  SimulatorConfig cfg = small_config(ObjectiveKind::kLogistic);
  cfg.samples = 64;
  cfg.batch = 0;
  cfg.steps = 30;
  cfg.lr = 0.5;
  std::vector<Trajectory> runs;
  for (std::uint32_t p : {1u, 2u, 4u, 8u}) {
    cfg.workers = p;
    StandIn s;
    runs.push_back(run_or_fail(cfg, s.factory()));
  }
  for (std::size_t r = 1; r < runs.size(); ++r) {
    EXPECT_EQ(runs[r].initial_loss, runs[0].initial_loss);
    ASSERT_EQ(runs[r].final_params.size(), runs[0].final_params.size());
    for (std::size_t i = 0; i < runs[0].final_params.size(); ++i)
      EXPECT_NEAR(runs[r].final_params[i], runs[0].final_params[i], 1e-5) << "run " << r;
    EXPECT_NEAR(runs[r].steps.back().loss, runs[0].steps.back().loss, 1e-6);
  }
  EXPECT_LT(runs[0].steps.back().loss, 0.7 * runs[0].initial_loss);  // it did train
}

// ---- what the simulator hands the optimizer --------------------------------------------------

TEST(Simulator, WorkersGetTheGradientOfTheirOwnMinibatch) {
  SimulatorConfig cfg = small_config(ObjectiveKind::kMlp);
  cfg.steps = 1;
  StandIn s;
  run_or_fail(cfg, s.factory());
  const ObjectiveSpec spec = spec_of(cfg);
  auto data = make_dataset(spec);
  auto shards = split_samples(data.value(), cfg.workers, cfg.split, cfg.skew);
  ASSERT_TRUE(data.ok() && shards.ok());
  const std::vector<float> x0 = initial_point(spec);
  for (std::uint32_t w = 0; w < cfg.workers; ++w) {
    auto batch = minibatch(shards.value()[w], cfg.batch, cfg.seed, 0, w);
    std::vector<double> g;
    ASSERT_TRUE(evaluate(data.value(), x0, batch.value(), nullptr, &g).ok());
    ASSERT_EQ(s.log.first_grads[w].size(), g.size());
    for (std::size_t i = 0; i < g.size(); ++i)
      EXPECT_EQ(s.log.first_grads[w][i], static_cast<float>(g[i])) << "worker " << w;
  }
  EXPECT_NE(s.log.first_grads[0], s.log.first_grads[1]);
}

TEST(Simulator, LearningRateScheduleAndEpochs) {
  SimulatorConfig cfg = small_config(ObjectiveKind::kLeastSquares);
  cfg.steps = 8;
  cfg.lr = 0.1;
  cfg.lr_decay = 0.5;
  cfg.lr_milestones = {5, 3};  // order does not matter: lr * decay^(milestones passed)
  cfg.steps_per_epoch = 3;
  StandIn s;
  const Trajectory t = run_or_fail(cfg, s.factory());
  const double want[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025};
  const std::uint32_t epochs[] = {0, 0, 0, 1, 1, 1, 2, 2};
  ASSERT_EQ(t.steps.size(), 8u);
  ASSERT_EQ(s.log.inputs.size(), 8u);
  for (std::uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(t.steps[i].step, i);
    EXPECT_DOUBLE_EQ(t.steps[i].lr, want[i]) << "step " << i;
    EXPECT_DOUBLE_EQ(s.log.inputs[i].lr, want[i]) << "step " << i;
    EXPECT_EQ(s.log.inputs[i].step, i);
    EXPECT_EQ(s.log.inputs[i].epoch, epochs[i]) << "step " << i;
  }
}

// ---- checksums --------------------------------------------------------------------------------

TEST(Simulator, ChecksumIsFnv1aOfTheEvaluationModel) {
  // Hand-computed FNV-1a 64: the offset basis for no bytes; bytes 00 00 80 3f 00 00 20 c0 for
  // {1.0f, -2.5f}.
  EXPECT_EQ(fnv1a64(Span<const float>()), 0xcbf29ce484222325ull);
  const std::vector<float> two = {1.0f, -2.5f};
  EXPECT_EQ(fnv1a64(two), 0x09e629ee2dfdb3f8ull);

  SimulatorConfig cfg = small_config(ObjectiveKind::kLogistic);
  StandIn s;
  const Trajectory t = run_or_fail(cfg, s.factory());
  for (std::size_t i = 0; i < t.steps.size(); ++i) {
    EXPECT_EQ(t.steps[i].checksum, fnv1a64(t.steps[i].params));
    if (i > 0 && t.steps[i].params != t.steps[i - 1].params) {
      EXPECT_NE(t.steps[i].checksum, t.steps[i - 1].checksum) << "step " << i;
    }
  }
  EXPECT_EQ(t.final_params, t.steps.back().params);
  // One flipped low bit of one parameter changes the checksum.
  std::vector<float> p = t.final_params;
  std::uint32_t bits;
  std::memcpy(&bits, &p[3], 4);
  bits ^= 1u;
  std::memcpy(&p[3], &bits, 4);
  EXPECT_NE(fnv1a64(p), fnv1a64(t.final_params));
}

// ---- accounting with the real sgdm preset -----------------------------------------------------

TEST(Simulator, SgdmSendsDenseBuffersBothWays) {
  for (ObjectiveKind kind : kAllKinds) {
    SimulatorConfig cfg = small_config(kind);
    cfg.preset = "sgdm";
    auto r = simulate(cfg);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const std::uint64_t n = parameter_count(spec_of(cfg));
    for (const StepTrace& st : r->steps) {
      ASSERT_EQ(st.bytes_up.size(), cfg.workers);
      ASSERT_EQ(st.bytes_down.size(), cfg.workers);
      for (std::uint32_t w = 0; w < cfg.workers; ++w) {
        EXPECT_EQ(st.bytes_up[w], 32 + 4 * n);
        EXPECT_EQ(st.bytes_down[w], 32 + 4 * n);
      }
    }
    EXPECT_LT(r->steps.back().loss, r->initial_loss);
    ASSERT_EQ(r->final_models.size(), cfg.workers);
    for (const auto& m : r->final_models) EXPECT_EQ(m, r->final_params);  // one shared model
  }
}

// ---- bad input --------------------------------------------------------------------------------

TEST(Simulator, BadConfigsAreRejected) {
  StandIn s;
  SimulatorConfig cfg = small_config(ObjectiveKind::kLeastSquares);
  auto expect_invalid = [&](const SimulatorConfig& c, const char* what) {
    EXPECT_EQ(simulate(c, s.factory()).status().code(), StatusCode::kInvalidArgument) << what;
  };
  SimulatorConfig c = cfg;
  c.workers = 0;
  expect_invalid(c, "no workers");
  c = cfg;
  c.batch = 17;  // shards of 16
  expect_invalid(c, "batch larger than a shard");
  c = cfg;
  c.samples = 3;  // fewer samples than workers
  expect_invalid(c, "samples < workers");
  c = cfg;
  c.preset = "nosuch";
  expect_invalid(c, "unknown preset");
  c = cfg;
  c.steps_per_epoch = 0;
  expect_invalid(c, "steps_per_epoch 0");
  c = cfg;
  c.lr = std::nan("");
  expect_invalid(c, "NaN lr");
  c = cfg;
  c.skew = 1.5;
  c.split = DataSplit::kNonIid;
  expect_invalid(c, "skew > 1");
  // The optimizer's errors come back unchanged.
  OptimizerFactory strict =
      [](const PresetDesc&, std::uint32_t, Span<const float>,
         const std::vector<std::vector<std::uint64_t>>&) -> Result<std::unique_ptr<Optimizer>> {
    return Status(StatusCode::kUnimplemented, "nothing here");
  };
  EXPECT_EQ(simulate(cfg, strict).status().code(), StatusCode::kUnimplemented);
}

TEST(Simulator, JsonHasTheDocumentedFields) {
  SimulatorConfig cfg = small_config(ObjectiveKind::kLeastSquares);
  cfg.steps = 2;
  StandIn s;
  const Trajectory t = run_or_fail(cfg, s.factory());
  const std::string j = trajectory_json(cfg, t);
  for (const char* key :
       {"\"format\":\"gradcomp-trajectory-1\"", "\"config\":", "\"preset\":", "\"workers\":4",
        "\"objective\":\"ls\"", "\"split\":\"iid\"", "\"n\":18", "\"shapes\":[[3,6]]",
        "\"initial_loss\":", "\"steps\":[", "\"bytes_up\":[104,104,104,104]",
        "\"final_checksum\":", "\"params\":", "\"final_params\":"}) {
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  }
  char hex[24];
  std::snprintf(hex, sizeof hex, "\"%016llx\"",
                static_cast<unsigned long long>(t.steps[1].checksum));
  EXPECT_NE(j.find(hex), std::string::npos);
}

}  // namespace
}  // namespace gradcomp::ref
