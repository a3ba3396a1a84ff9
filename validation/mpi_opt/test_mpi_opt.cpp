// The distributed optimizer on real MPI ranks against the reference P-worker simulator
// (issue #5): every preset, P = the mpiexec size (CTest runs 2 and 4), T = 60 steps of least
// squares with minibatches and an lr decay. Each rank computes its own worker's gradient from
// the simulator's data and split (ref/objectives.hpp), so the distributed run and
// ref::simulate see the same numbers:
//   deterministic + ref:any  final parameters, every replica and the bytes equal bit for bit
//   deterministic + kk       bit for bit on kk:serial (tolerances.md: byte-exact there)
//   fast                     within kFastTolerance, the largest difference printed
// Plus save at step 25 / restore / continue, sizes that differ across ranks, a NaN gradient on
// one rank and a corrupt state on one rank: an error on every rank, nothing changed, no hang.
//
// Every collective call happens on every rank: checks are EXPECTs after the runs (an ASSERT
// that returns early on one rank would leave the others waiting); CTest's TIMEOUT catches a
// hang anyway.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gradcomp/coll/distributed_optimizer.hpp"
#include "gradcomp/coll/mpi_communicator.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/ref/objectives.hpp"
#include "gradcomp/ref/simulator.hpp"
#include "gradcomp/wire_format.hpp"

namespace gradcomp::coll {
namespace {

Communicator* g_comm = nullptr;

// Fast mode sums in MPI's order in f32, so trajectories drift apart by rounding that the
// optimizers then amplify (sign and top-k decisions flip near ties). Bound on
// max|x - x_sim| / max|x_sim| after 60 steps; measured <= 1e-5 (PowerSGD, P = 3), the rest
// <= 2e-7 (docs/distributed.md, "Fast mode").
constexpr double kFastTolerance = 1e-4;

// How the bytes StepStats counts on the wire relate to the simulator's CommRecord in
// deterministic mode (docs/distributed.md, "Bytes"):
enum class Wire {
  kRecord,  // payload allgathers: up and down equal the CommRecord
  kValues,  // values-only exchanges (dense, shared support, CSER blocks, PowerSGD): up is the
            // CommRecord's payload without its wire header, down = (P - 1) up
  kUp,      // up equals the CommRecord; down is the others' messages (majority vote, async)
  kMore,    // up adds the server stage or TernGrad's shared scalers to the CommRecord's payload
};

// The presets with the case strings and learning rates of the reference convergence tests
// (validation/unit/test_convergence.cpp), which keep this small problem stable.
struct Case {
  const char* preset;
  double lr;
  Wire wire;
};
const std::vector<Case>& cases() {
  static const std::vector<Case> table = {
      {"sgdm", 0.05, Wire::kValues},
      {"ef-sgd", 0.05, Wire::kRecord},
      {"signum-mv", 0.02, Wire::kUp},
      {"signsgd-mv", 0.02, Wire::kUp},
      {"dist-ef-sgdm", 0.002, Wire::kMore},
      {"dgc:density=0.125", 0.02, Wire::kRecord},
      {"qsparse-local:up.density=0.125", 0.02, Wire::kRecord},
      {"pqasgd", 0.05, Wire::kRecord},
      {"sparse-param-avg", 0.05, Wire::kValues},
      {"cser", 0.05, Wire::kValues},
      {"cser-pl", 0.05, Wire::kValues},
      {"m-cser", 0.05, Wire::kValues},
      {"gmc:up.density=0.125", 0.02, Wire::kRecord},
      {"gmc+:up.density=0.125", 0.005, Wire::kValues},
      {"def-a:up.density=0.125", 0.005, Wire::kValues},
      {"powersgd", 0.05, Wire::kValues},
      // Variants that exercise other paths of the same engines.
      {"dist-ef-sgdm:server=chunked", 0.002, Wire::kMore},
      {"qsparse-local:up.density=0.125,async=1", 0.02, Wire::kUp},
      {"cser:form=paper2c", 0.05, Wire::kValues},
      {"ef-sgd:up=terngrad,up.scaler=shared", 0.02, Wire::kMore},
  };
  return table;
}

ref::SimulatorConfig problem(const char* preset, double lr) {
  ref::SimulatorConfig cfg;
  cfg.preset = preset;
  cfg.workers = g_comm->size();
  cfg.objective = ref::ObjectiveKind::kLeastSquares;
  cfg.features = 16;
  cfg.outputs = 4;
  cfg.samples = 256;
  cfg.batch = 16;  // minibatches: the stochastic path of the simulator
  cfg.steps = 60;
  cfg.steps_per_epoch = 10;  // DGC's warm-up runs through its five epochs
  cfg.lr = lr;
  cfg.lr_decay = 0.5;
  cfg.lr_milestones = {40};  // an lr change (outside_rescale, DGC)
  cfg.seed = 3;
  return cfg;
}

ref::ObjectiveSpec spec_of(const ref::SimulatorConfig& cfg) {
  ref::ObjectiveSpec spec;
  spec.kind = cfg.objective;
  spec.features = cfg.features;
  spec.outputs = cfg.outputs;
  spec.samples = cfg.samples;
  spec.noise = cfg.noise;
  spec.seed = cfg.seed;
  return spec;
}

// The simulator's schedule (ref_simulator.cpp lr_at): repeated multiplication.
double lr_at(const ref::SimulatorConfig& cfg, std::uint32_t step) {
  double lr = cfg.lr;
  for (std::uint32_t m : cfg.lr_milestones)
    if (step >= m) lr *= cfg.lr_decay;
  return lr;
}

// One rank's side of the simulator's run.
struct Problem {
  ref::SimulatorConfig cfg;
  ref::Dataset data;
  std::vector<std::uint32_t> shard;
  std::vector<float> x0;
  std::vector<std::vector<std::uint64_t>> shapes;
};

Problem make_problem(const ref::SimulatorConfig& cfg) {
  Problem p;
  p.cfg = cfg;
  const ref::ObjectiveSpec spec = spec_of(cfg);
  p.data = ref::make_dataset(spec).value();
  p.shard = ref::split_samples(p.data, cfg.workers, cfg.split, cfg.skew).value()[g_comm->rank()];
  p.x0 = ref::initial_point(spec);
  p.shapes = ref::parameter_shapes(spec);
  return p;
}

// This rank's gradient of its minibatch loss at the optimizer's gradient point.
Status gradient(const Problem& p, const DistributedOptimizer& opt, std::uint32_t t,
                std::vector<float>& g) {
  auto batch = ref::minibatch(p.shard, p.cfg.batch, p.cfg.seed, t, g_comm->rank());
  if (!batch.ok()) return batch.status();
  std::vector<double> grad;
  GRADCOMP_TRY(ref::evaluate(p.data, opt.gradient_point(), batch.value(), nullptr, &grad));
  g.assign(grad.size(), 0.0f);
  for (std::size_t i = 0; i < grad.size(); ++i) g[i] = static_cast<float>(grad[i]);
  return Status::success();
}

Result<std::unique_ptr<DistributedOptimizer>> create(const Problem& p,
                                                     const DistributedOptions& options) {
  auto preset = parse_preset(p.cfg.preset);
  if (!preset.ok()) return preset.status();
  return DistributedOptimizer::create(preset.value(), *g_comm, p.x0, p.shapes, options);
}

Status run_steps(const Problem& p, DistributedOptimizer& opt, std::uint32_t from, std::uint32_t to,
                 std::vector<std::uint64_t>* up, std::vector<std::uint64_t>* down) {
  std::vector<float> g;
  for (std::uint32_t t = from; t < to; ++t) {
    GRADCOMP_TRY(gradient(p, opt, t, g));
    StepInput in;
    in.step = t;
    in.epoch = t / p.cfg.steps_per_epoch;
    in.lr = lr_at(p.cfg, t);
    StepStats st;
    GRADCOMP_TRY(opt.step(in, g, &st));
    if (up) up->push_back(st.bytes_up);
    if (down) down->push_back(st.bytes_down);
  }
  return Status::success();
}

struct Outcome {
  Status status;
  std::vector<float> eval, model;
  std::vector<std::uint64_t> up, down;
};

// The whole run: create, T steps (optionally saving at `save_at` and continuing in a fresh
// optimizer restored from that state), evaluation model.
Outcome run(const Problem& p, const DistributedOptions& options, int save_at = -1) {
  Outcome out;
  auto opt = create(p, options);
  if (!opt.ok()) {
    out.status = opt.status();
    return out;
  }
  std::unique_ptr<DistributedOptimizer> o = std::move(opt).value();
  const std::uint32_t split = save_at < 0 ? p.cfg.steps : static_cast<std::uint32_t>(save_at);
  out.status = run_steps(p, *o, 0, split, &out.up, &out.down);
  if (!out.status.ok()) return out;
  if (save_at >= 0) {
    std::vector<std::uint8_t> state;
    out.status = o->save(state);
    if (!out.status.ok()) return out;
    o.reset();
    // A fresh optimizer created from x0: everything it knows comes from the state.
    auto fresh = create(p, options);
    if (!fresh.ok()) {
      out.status = fresh.status();
      return out;
    }
    o = std::move(fresh).value();
    out.status = o->restore(state);
    if (!out.status.ok()) return out;
    out.status = run_steps(p, *o, split, p.cfg.steps, &out.up, &out.down);
    if (!out.status.ok()) return out;
  }
  out.status = o->evaluation_model(out.eval);
  out.model.assign(o->model().begin(), o->model().end());
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// Every rank's verdict: true on all ranks iff true on each.
bool all_ranks(bool mine) {
  int v = mine ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return v == 1;
}

struct Reference {
  ref::Trajectory traj;
  std::vector<std::uint64_t> up, down;  // this rank's bytes per step
};

Reference run_simulator(const ref::SimulatorConfig& cfg) {
  Reference r;
  auto traj = ref::simulate(cfg);
  EXPECT_TRUE(traj.ok()) << traj.status().to_string();
  if (!traj.ok()) return r;
  r.traj = traj.value();
  for (const auto& s : r.traj.steps) {
    r.up.push_back(s.bytes_up[g_comm->rank()]);
    r.down.push_back(s.bytes_down[g_comm->rank()]);
  }
  return r;
}

// Bytes per step against the CommRecord (Wire above), and on every preset the wire's own
// balance: in deterministic mode every data exchange is an allgather(v), so each rank receives
// exactly what the others sent: sum over ranks of down = (P - 1) * sum over ranks of up.
void check_wire(const Case& c, const Reference& sim, const Outcome& got) {
  const std::uint64_t p = g_comm->size();
  ASSERT_EQ(got.up.size(), sim.up.size());
  std::vector<unsigned long long> up(got.up.begin(), got.up.end());
  std::vector<unsigned long long> down(got.down.begin(), got.down.end());
  MPI_Allreduce(MPI_IN_PLACE, up.data(), static_cast<int>(up.size()), MPI_UNSIGNED_LONG_LONG,
                MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, down.data(), static_cast<int>(down.size()), MPI_UNSIGNED_LONG_LONG,
                MPI_SUM, MPI_COMM_WORLD);
  // The two-phase collective may move its phase 1 with an alltoall (each rank receives only its
  // chunk of the others' messages), which this balance does not describe.
  const bool two_phase = std::string(c.preset).find("server=chunked") != std::string::npos;
  std::uint64_t total = 0;
  for (std::size_t t = 0; t < up.size(); ++t) {
    if (!two_phase) {
      EXPECT_EQ(down[t], (p - 1) * up[t]) << c.preset << ": step " << t << " wire balance";
    }
    total += up[t];
  }
  EXPECT_GT(total, 0u) << c.preset << ": nothing went on the wire";
  switch (c.wire) {
    case Wire::kRecord: {
      // Where the break-even rule picks the dense allreduce (DGC's warm-up densities at P = 4:
      // payload * P >= 2 * 4n), the decoded messages travel as 4n bytes instead.
      const std::uint64_t dense = 4 * sim.traj.final_params.size();
      for (std::size_t t = 0; t < got.up.size(); ++t) {
        const bool rule_dense = sim.up[t] * p >= 2 * dense;
        EXPECT_EQ(got.up[t], rule_dense ? dense : sim.up[t]) << c.preset << ": step " << t << " up";
        EXPECT_EQ(got.down[t], rule_dense ? (p - 1) * dense : sim.down[t])
            << c.preset << ": step " << t << " down";
      }
      break;
    }
    case Wire::kValues:
      // The CommRecord counts each message with its wire header (one per exchange; CSER
      // paper2c has two exchanges at a c2 step); the values-only exchanges send no header.
      for (std::size_t t = 0; t < got.up.size(); ++t) {
        if (sim.up[t] == 0) {
          EXPECT_EQ(got.up[t], 0u) << c.preset << ": step " << t;
          continue;
        }
        EXPECT_LE(got.up[t] + kHeaderBytes, sim.up[t]) << c.preset << ": step " << t << " bytes up";
        EXPECT_EQ((sim.up[t] - got.up[t]) % kHeaderBytes, 0u)
            << c.preset << ": step " << t << " bytes up " << got.up[t] << " vs " << sim.up[t];
        EXPECT_EQ(got.down[t], (p - 1) * got.up[t]) << c.preset << ": step " << t << " bytes down";
      }
      break;
    case Wire::kUp: EXPECT_EQ(got.up, sim.up) << c.preset << ": bytes up per step"; break;
    case Wire::kMore:
      // (server=ps: rank 0 only; chunked and shared scalers: every rank)
      for (std::size_t t = 0; t < got.up.size(); ++t)
        EXPECT_GE(got.up[t], sim.up[t]) << c.preset << ": step " << t << " bytes up";
      break;
  }
}

class PresetTest : public ::testing::TestWithParam<std::size_t> {};

// Deterministic mode with the reference compute: the simulator, bit for bit.
TEST_P(PresetTest, DeterministicRefMatchesSimulatorBitwise) {
  const Case& c = cases()[GetParam()];
  const ref::SimulatorConfig cfg = problem(c.preset, c.lr);
  const Reference sim = run_simulator(cfg);
  DistributedOptions options;
  options.compute = "ref:any";
  options.mode = ReductionMode::kDeterministic;
  const Outcome got = run(make_problem(cfg), options);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  const bool eval_ok = bitwise_equal(got.eval, sim.traj.final_params);
  const bool model_ok = bitwise_equal(got.model, sim.traj.final_models[g_comm->rank()]);
  EXPECT_TRUE(eval_ok) << c.preset << " P=" << g_comm->size()
                       << ": evaluation model differs, max rel diff "
                       << rel_diff(got.eval, sim.traj.final_params);
  EXPECT_TRUE(model_ok) << c.preset << ": rank " << g_comm->rank() << "'s replica differs";
  check_wire(c, sim, got);
  // The run moved: a match of two copies of x0 would prove nothing.
  EXPECT_GT(rel_diff(got.eval, make_problem(cfg).x0), 1e-3) << c.preset;
}

// Save at step 25, restore into a fresh optimizer, continue: the uninterrupted run, bitwise.
TEST_P(PresetTest, SaveRestoreContinueEqualsUninterrupted) {
  const Case& c = cases()[GetParam()];
  const ref::SimulatorConfig cfg = problem(c.preset, c.lr);
  const Problem p = make_problem(cfg);
  DistributedOptions options;
  options.compute = "ref:any";
  options.mode = ReductionMode::kDeterministic;
  const Outcome whole = run(p, options);
  const Outcome resumed = run(p, options, 25);
  ASSERT_TRUE(whole.status.ok()) << whole.status.to_string();
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.to_string();
  EXPECT_TRUE(bitwise_equal(whole.eval, resumed.eval))
      << c.preset << ": resumed run differs by " << rel_diff(resumed.eval, whole.eval);
  EXPECT_TRUE(bitwise_equal(whole.model, resumed.model)) << c.preset;
}

// Deterministic mode with the Kokkos compute: bitwise on kk:serial, which tolerances.md says
// reproduces the oracle's bytes on every fill.
TEST_P(PresetTest, DeterministicKokkos) {
  const Case& c = cases()[GetParam()];
  const ref::SimulatorConfig cfg = problem(c.preset, c.lr);
  DistributedOptions options;
  options.compute = "kk";
  options.mode = ReductionMode::kDeterministic;
  const Outcome got = run(make_problem(cfg), options);
  if (got.status.code() == StatusCode::kUnimplemented) {
    // create() agreed on it, so every rank skips together.
    GTEST_SKIP() << "kk cannot run " << c.preset << ": " << got.status.message();
  }
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  const Reference sim = run_simulator(cfg);
  const double d = rel_diff(got.eval, sim.traj.final_params);
  bool serial = false;
  for (const auto& impl : compressor_impls()) serial = serial || impl.name == "kk:serial";
  if (serial) {
    EXPECT_TRUE(bitwise_equal(got.eval, sim.traj.final_params))
        << c.preset << ": kk:serial differs from the simulator by " << d;
  } else {
    EXPECT_LE(d, kFastTolerance) << c.preset;
  }
  if (g_comm->rank() == 0)
    std::printf("[ kk det ] %-42s P=%u max rel diff %.3e\n", c.preset, g_comm->size(), d);
}

// Fast mode: MPI's reduction order, within the documented tolerance.
TEST_P(PresetTest, FastWithinTolerance) {
  const Case& c = cases()[GetParam()];
  const ref::SimulatorConfig cfg = problem(c.preset, c.lr);
  const Reference sim = run_simulator(cfg);
  DistributedOptions options;
  options.compute = "ref:any";
  options.mode = ReductionMode::kFast;
  const Outcome got = run(make_problem(cfg), options);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  const double d = rel_diff(got.eval, sim.traj.final_params);
  if (g_comm->rank() == 0)
    std::printf("[ fast   ] %-42s P=%u max rel diff %.3e\n", c.preset, g_comm->size(), d);
  EXPECT_LE(d, kFastTolerance) << c.preset;
}

// A NaN gradient on the last rank at step 3: kNonFinite on every rank, no state changed (the
// saved state is byte-identical), and the run then continues exactly as if it never happened.
TEST_P(PresetTest, NanGradientOnOneRankFailsEveryRankAndChangesNothing) {
  const Case& c = cases()[GetParam()];
  const ref::SimulatorConfig cfg = problem(c.preset, c.lr);
  const Problem p = make_problem(cfg);
  DistributedOptions options;
  options.compute = "ref:any";
  options.mode = ReductionMode::kDeterministic;
  auto created = create(p, options);
  ASSERT_TRUE(all_ranks(created.ok())) << created.status().to_string();
  std::unique_ptr<DistributedOptimizer> opt = std::move(created).value();
  Status s = run_steps(p, *opt, 0, 3, nullptr, nullptr);
  std::vector<std::uint8_t> before, after;
  (void)opt->save(before);
  std::vector<float> g;
  s = gradient(p, *opt, 3, g);
  if (g_comm->rank() == g_comm->size() - 1) g[g.size() / 2] = NAN;
  StepInput in;
  in.step = 3;
  in.lr = lr_at(cfg, 3);
  const Status bad = opt->step(in, g, nullptr);
  EXPECT_EQ(bad.code(), StatusCode::kNonFinite) << c.preset << ": " << bad.to_string();
  (void)opt->save(after);
  EXPECT_EQ(before, after) << c.preset << ": state changed by a failed step";
  // Continue: the result is the uninterrupted run's.
  Status rest = run_steps(p, *opt, 3, cfg.steps, nullptr, nullptr);
  EXPECT_TRUE(rest.ok()) << rest.to_string();
  std::vector<float> eval;
  EXPECT_TRUE(opt->evaluation_model(eval).ok());
  const Outcome whole = run(p, options);
  EXPECT_TRUE(bitwise_equal(eval, whole.eval)) << c.preset;
}

std::string case_name(const ::testing::TestParamInfo<std::size_t>& info) {
  std::string name = cases()[info.param].preset;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllPresets, PresetTest, ::testing::Range<std::size_t>(0, cases().size()),
                         case_name);

TEST(Catalog, EveryPresetIsCovered) {
  for (const PresetInfo& info : preset_catalog()) {
    bool found = false;
    for (const Case& c : cases()) {
      auto p = parse_preset(c.preset);
      found = found || (p.ok() && p->kind == info.kind);
    }
    EXPECT_TRUE(found) << info.name << " has no distributed test case";
  }
}

// ---- the algorithm override ---------------------------------------------------------------------

// Top-k with error feedback at a density above 1/P and well below it: "auto" applies the
// break-even rule (allgather while payload * P < 2 * 4n, docs/collectives.md), "dense" and
// "allgather" force one; every choice ends bitwise on the simulator in deterministic mode (dense
// averages the decoded messages, which is the same mean for any compressor), and the bytes show
// which collective ran: a dense exchange sends 4n per step, the allgather the payload.
TEST(AlgorithmOverride, TopkPicksDenseOrAllgatherByTheRuleAndMatchesTheSimulator) {
  const std::uint64_t p = g_comm->size();
  for (const char* preset : {"ef-sgd:up=topk,up.density=0.6", "ef-sgd:up=topk,up.density=0.05"}) {
    const ref::SimulatorConfig cfg = problem(preset, 0.02);
    const Reference sim = run_simulator(cfg);
    const Problem prob = make_problem(cfg);
    const std::uint64_t dense = 4 * prob.x0.size();
    ASSERT_FALSE(sim.up.empty());
    // The rule on the simulator's own payload size.
    const bool rule_dense = sim.up[0] * p >= 2 * dense;
    EXPECT_EQ(rule_dense, std::string(preset).find("0.6") != std::string::npos)
        << preset << ": the two cases should fall on both sides of the rule (payload " << sim.up[0]
        << ", 4n = " << dense << ", P = " << p << ")";
    for (const char* algorithm : {"auto", "dense", "allgather"}) {
      DistributedOptions options;
      options.compute = "ref:any";
      options.mode = ReductionMode::kDeterministic;
      options.algorithm = algorithm;
      const Outcome got = run(prob, options);
      ASSERT_TRUE(got.status.ok()) << preset << " " << algorithm << ": " << got.status.to_string();
      EXPECT_TRUE(bitwise_equal(got.eval, sim.traj.final_params))
          << preset << " algorithm " << algorithm << ": differs by "
          << rel_diff(got.eval, sim.traj.final_params);
      const bool want_dense =
          std::string(algorithm) == "dense" || (std::string(algorithm) == "auto" && rule_dense);
      for (std::size_t t = 0; t < got.up.size(); ++t) {
        EXPECT_EQ(got.up[t], want_dense ? dense : sim.up[t])
            << preset << " " << algorithm << ": step " << t << " bytes up";
      }
      // Fast mode through the same choice stays within the tolerance.
      options.mode = ReductionMode::kFast;
      const Outcome fast = run(prob, options);
      ASSERT_TRUE(fast.status.ok()) << fast.status.to_string();
      EXPECT_LE(rel_diff(fast.eval, sim.traj.final_params), kFastTolerance)
          << preset << " " << algorithm << " (fast)";
    }
  }
}

// An override whose result would not be the simulator's (a mean where a vote or a two-way
// server is asked for, shared support for rank-specific supports, anything but dense for
// PowerSGD, ...) is kInvalidArgument at create() on every rank, with a message.
TEST(AlgorithmOverride, AnAlgorithmThatDoesNotApplyIsRefusedOnEveryRank) {
  const struct {
    const char* preset;
    const char* algorithm;
  } refused[] = {
      {"ef-sgd:up=topk,up.density=0.1", "shared-support"},
      {"ef-sgd:up=topk,up.density=0.1", "majority"},
      {"ef-sgd:up=topk,up.density=0.1", "two-phase"},
      {"ef-sgd:up=topk,up.density=0.1", "ring"},
      {"signum-mv", "allgather"},
      {"signum-mv", "dense"},
      {"dist-ef-sgdm:server=chunked", "allgather"},
      {"dist-ef-sgdm:server=chunked", "dense"},
      {"dist-ef-sgdm", "two-phase"},
      {"powersgd", "allgather"},
      {"cser", "allgather"},
      {"qsparse-local:up.density=0.125,async=1", "dense"},
      {"dgc:density=0.125", "shared-support"},
  };
  for (const auto& r : refused) {
    const Problem prob = make_problem(problem(r.preset, 0.02));
    DistributedOptions options;
    options.compute = "ref:any";
    options.algorithm = r.algorithm;
    auto opt = create(prob, options);
    EXPECT_FALSE(opt.ok()) << r.preset << " with " << r.algorithm << " was accepted";
    if (opt.ok()) continue;
    EXPECT_EQ(opt.status().code(), StatusCode::kInvalidArgument) << opt.status().to_string();
    EXPECT_NE(opt.status().message().find(r.algorithm), std::string::npos)
        << "the message should name the algorithm: " << opt.status().to_string();
  }
  // And the ones that apply are accepted (shared support for the shared block of gmc+).
  for (const char* ok : {"shared-support", "dense", "allgather"}) {
    DistributedOptions options;
    options.compute = "ref:any";
    options.algorithm = ok;
    auto opt = create(make_problem(problem("gmc+:up.density=0.125", 0.005)), options);
    EXPECT_TRUE(opt.ok()) << ok << ": " << opt.status().to_string();
  }
}

// ---- fast mode with the Kokkos kernels ---------------------------------------------------------

// One preset per family and per collective, fast mode (MPI's reduction order, f32
// accumulation) with kk:serial compute: within the fast-mode tolerance of the simulator.
TEST(FastKokkos, OnePresetPerFamilyWithinTolerance) {
  bool serial = false;
  for (const auto& impl : compressor_impls()) serial = serial || impl.name == "kk:serial";
  if (!serial) GTEST_SKIP() << "no kk:serial in this build";
  const Case family[] = {
      {"sgdm", 0.05, Wire::kValues},                            // dense
      {"ef-sgd", 0.05, Wire::kRecord},                          // allgather
      {"signum-mv", 0.02, Wire::kUp},                           // majority
      {"dist-ef-sgdm:server=chunked", 0.002, Wire::kMore},      // two-phase
      {"dist-ef-sgdm", 0.002, Wire::kMore},                     // mean + parameter server
      {"gmc+:up.density=0.125", 0.005, Wire::kValues},          // shared-support
      {"powersgd", 0.05, Wire::kValues},                        // dense P and Q
      {"qsparse-local:up.density=0.125", 0.02, Wire::kRecord},  // local steps
      {"cser", 0.05, Wire::kValues},                            // partial averaging
      {"def-a:up.density=0.125", 0.005, Wire::kValues},         // detached
  };
  for (const Case& c : family) {
    const ref::SimulatorConfig cfg = problem(c.preset, c.lr);
    const Reference sim = run_simulator(cfg);
    DistributedOptions options;
    options.compute = "kk:serial";
    options.mode = ReductionMode::kFast;
    const Outcome got = run(make_problem(cfg), options);
    if (got.status.code() == StatusCode::kUnimplemented) {
      if (g_comm->rank() == 0)
        std::printf("[ kk fast] %-42s skipped: kk cannot run it\n", c.preset);
      continue;
    }
    ASSERT_TRUE(got.status.ok()) << c.preset << ": " << got.status.to_string();
    const double d = rel_diff(got.eval, sim.traj.final_params);
    if (g_comm->rank() == 0)
      std::printf("[ kk fast] %-42s P=%u max rel diff %.3e\n", c.preset, g_comm->size(), d);
    EXPECT_LE(d, kFastTolerance) << c.preset;
    EXPECT_GT(rel_diff(got.eval, make_problem(cfg).x0), 1e-3) << c.preset << ": did not move";
  }
}

// ---- bad input across ranks --------------------------------------------------------------------

TEST(BadInput, ModelSizesThatDifferAcrossRanksFailEveryRank) {
  const Problem p = make_problem(problem("sgdm", 0.05));
  std::vector<float> x0 = p.x0;
  if (g_comm->rank() == 0) x0.push_back(0.5f);  // rank 0 has one element more
  DistributedOptions options;
  auto opt = DistributedOptimizer::create(parse_preset("sgdm").value(), *g_comm, x0, {}, options);
  ASSERT_FALSE(opt.ok());
  EXPECT_EQ(opt.status().code(), StatusCode::kInvalidArgument) << opt.status().to_string();
}

TEST(BadInput, PresetsThatDifferAcrossRanksFailEveryRank) {
  const Problem p = make_problem(problem("sgdm", 0.05));
  const char* text = g_comm->rank() == 1 ? "sgdm:momentum=0.5" : "sgdm";
  auto opt = DistributedOptimizer::create(parse_preset(text).value(), *g_comm, p.x0, p.shapes,
                                          DistributedOptions{});
  ASSERT_FALSE(opt.ok());
  EXPECT_EQ(opt.status().code(), StatusCode::kInvalidArgument) << opt.status().to_string();
}

TEST(BadInput, BadPresetOnOneRankFailsEveryRank) {
  // One rank's layout does not fit the model: its resolve fails before any hash is compared.
  const Problem p = make_problem(problem("powersgd", 0.05));
  std::vector<std::vector<std::uint64_t>> shapes = p.shapes;
  if (g_comm->rank() == 0) shapes = {{3, 5}};
  auto opt = DistributedOptimizer::create(parse_preset("powersgd").value(), *g_comm, p.x0, shapes,
                                          DistributedOptions{});
  ASSERT_FALSE(opt.ok());
  EXPECT_EQ(opt.status().code(), StatusCode::kInvalidArgument) << opt.status().to_string();
}

TEST(BadInput, GradientSizeWrongOnOneRankFailsEveryRank) {
  const ref::SimulatorConfig cfg = problem("dgc:density=0.125", 0.02);
  const Problem p = make_problem(cfg);
  DistributedOptions options;
  options.compute = "ref:any";
  options.mode = ReductionMode::kDeterministic;
  auto created = create(p, options);
  ASSERT_TRUE(all_ranks(created.ok()));
  std::unique_ptr<DistributedOptimizer> opt = std::move(created).value();
  std::vector<float> g;
  ASSERT_TRUE(all_ranks(gradient(p, *opt, 0, g).ok()));
  std::vector<std::uint8_t> before, after;
  (void)opt->save(before);
  if (g_comm->rank() == 0) g.pop_back();
  const Status s = opt->step(StepInput{}, g, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  (void)opt->save(after);
  EXPECT_EQ(before, after);
}

TEST(BadInput, CorruptStateOnOneRankFailsEveryRankAndKeepsTheState) {
  const ref::SimulatorConfig cfg = problem("cser", 0.05);
  const Problem p = make_problem(cfg);
  DistributedOptions options;
  options.mode = ReductionMode::kDeterministic;
  options.compute = "ref:any";
  auto created = create(p, options);
  ASSERT_TRUE(all_ranks(created.ok()));
  std::unique_ptr<DistributedOptimizer> opt = std::move(created).value();
  ASSERT_TRUE(all_ranks(run_steps(p, *opt, 0, 5, nullptr, nullptr).ok()));
  std::vector<std::uint8_t> state, now;
  (void)opt->save(state);
  ASSERT_TRUE(all_ranks(run_steps(p, *opt, 5, 7, nullptr, nullptr).ok()));
  (void)opt->save(now);
  std::vector<std::uint8_t> bad = state;
  if (g_comm->rank() == g_comm->size() - 1) bad[60] ^= 0x10;  // a bit of the body
  const Status s = opt->restore(bad);
  EXPECT_FALSE(s.ok());
  if (g_comm->rank() == g_comm->size() - 1) {
    EXPECT_EQ(s.code(), StatusCode::kCorruptPayload) << s.to_string();
  }
  std::vector<std::uint8_t> after;
  (void)opt->save(after);
  EXPECT_EQ(after, now) << "a failed restore changed the state";
  // A truncated state and another rank's state are refused too.
  std::vector<std::uint8_t> cut(state.begin(), state.end() - 9);
  EXPECT_EQ(opt->restore(cut).code(), StatusCode::kCorruptPayload);
}

}  // namespace
}  // namespace gradcomp::coll

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    // One rank prints; the others' failures still fail the run through the exit code.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = 0;
  {
    auto comm = gradcomp::coll::make_mpi_communicator(MPI_COMM_WORLD);
    if (!comm.ok()) {
      std::fprintf(stderr, "make_mpi_communicator: %s\n", comm.status().to_string().c_str());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    std::unique_ptr<gradcomp::Communicator> owned = std::move(comm).value();
    gradcomp::coll::g_comm = owned.get();
    rc = RUN_ALL_TESTS();
    if (rc != 0) std::fprintf(stderr, "rank %d: tests failed\n", rank);
    MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  }
  MPI_Finalize();
  return rc;
}
