// Convergence of every preset in the P-worker simulator (issue #3): on a strongly convex
// least-squares problem with noise 0 (interpolation: every sample's residual vanishes at the
// planted W*, so W* is the optimum of every worker's local loss and of the dense sgdm run) each
// preset, with P = 1, 2, 4, 8, must end within a stated relative distance of W*. Plus the
// non-IID split: gmc and dgc run on label-skewed data and their final losses are printed.
//
// Problem: W of shape 4 x 16 (n = 64), 256 samples in total for every P (so the objective and
// its optimum do not depend on P; with 8 workers each shard has 32 >= 16 samples, full column
// rank), full local batches (deterministic gradients). Initial loss about 31.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "gradcomp/ref/objectives.hpp"
#include "gradcomp/ref/simulator.hpp"

namespace gradcomp::ref {
namespace {

// One preset's run. The default case string of each preset is kept except where the small
// problem needs another value (noted per row); `tolerance` bounds ||W_T - W*|| / ||W*||.
struct ConvergenceCase {
  const char* preset;
  double lr;
  std::uint32_t steps;
  std::vector<std::uint32_t> milestones;  // lr * 0.1 at each
  double tolerance;
  const char* why;  // why this lr / these options / this tolerance
};

const std::vector<ConvergenceCase>& cases() {
  static const std::vector<ConvergenceCase> table = {
      {"sgdm", 0.05, 1000, {}, 1e-5, "dense baseline: linear convergence to float precision"},
      {"ef-sgd",
       0.05,
       1000,
       {},
       1e-4,
       "blocksign (one block) with EF: linear convergence, slower than dense"},
      {"signum-mv",
       0.02,
       1500,
       {750, 1200},
       2e-3,
       "1-bit signs do not converge at a constant lr (steps of size lr per element): two decays "
       "by 10 leave an oscillation of order lr_final = 2e-4 per element"},
      {"signsgd-mv", 0.02, 1500, {750, 1200}, 2e-3, "as signum-mv"},
      {"dist-ef-sgdm",
       0.002,
       3000,
       {},
       1e-4,
       "two-way scaled sign (one block of 64) with Nesterov mu = 0.9: the stable lr shrinks with "
       "P (diverges at 0.01 for P >= 2, slow at 0.005 for P = 8); at 0.002 linear for all P"},
      {"dgc:density=0.125",
       0.02,
       1000,
       {},
       1e-4,
       "density 0.001 gives k = 1 of 64 and diverges with mu = 0.9 at P = 1: k = 8; the default "
       "warm-up runs over the first 5 epochs (50 steps per epoch here)"},
      {"qsparse-local:up.density=0.125",
       0.02,
       1000,
       {},
       1e-4,
       "qsgd_topk with k = 1 of 64 diverges at P = 1: k = 8; H = 4"},
      {"pqasgd", 0.05, 1000, {}, 1e-4, "unbiased 1-level QSGD of the model delta every 4 steps"},
      {"sparse-param-avg",
       0.05,
       1000,
       {},
       1e-4,
       "local SGD on interpolating data: every worker converges to W* by itself"},
      {"cser", 0.05, 1000, {}, 1e-4, "as sparse-param-avg"},
      {"cser-pl", 0.05, 1000, {}, 1e-4, "as sparse-param-avg"},
      {"m-cser", 0.05, 1000, {}, 1e-5, "local NAG with mu = 0.9"},
      {"gmc:up.density=0.125",
       0.02,
       1000,
       {},
       1e-3,
       "top-k with k = 1 of 64 diverges with global momentum 0.9: k = 8"},
      {"gmc+:up.density=0.125",
       0.005,
       3000,
       {},
       1e-3,
       "rbgs k = 1 of 64 diverges: k = 8; detached EF (lambda 0.3) is slow at lr 0.005 and "
       "unstable at 0.02"},
      {"def-a:up.density=0.125",
       0.005,
       1000,
       {},
       1e-4,
       "rbgs k = 1 of 64 diverges: k = 8; local heavy ball mu = 0.9 with lr inside"},
      {"powersgd", 0.05, 1000, {}, 1e-4, "rank 2 of the 4 x 16 gradient, EF, Nesterov after"},
  };
  return table;
}

// The problem of this file (W of 4 x 16, 256 samples for every P, 50 steps per epoch) for
// `preset` with `workers` workers; the rest stays at the simulator's defaults.
SimulatorConfig problem(const char* preset, std::uint32_t workers, ObjectiveKind kind) {
  SimulatorConfig cfg;
  cfg.preset = preset;
  cfg.workers = workers;
  cfg.objective = kind;
  cfg.features = 16;
  cfg.outputs = 4;
  cfg.samples = 256;
  cfg.steps_per_epoch = 50;
  return cfg;
}

SimulatorConfig least_squares(const ConvergenceCase& c, std::uint32_t workers) {
  SimulatorConfig cfg = problem(c.preset, workers, ObjectiveKind::kLeastSquares);
  cfg.batch = 0;
  cfg.noise = 0.0;
  cfg.steps = c.steps;
  cfg.lr = c.lr;
  cfg.lr_decay = 0.1;
  cfg.lr_milestones = c.milestones;
  cfg.seed = 1;
  return cfg;
}

double relative_distance(const std::vector<float>& w, const std::vector<float>& target) {
  double d = 0.0, t = 0.0;
  for (std::size_t i = 0; i < target.size(); ++i) {
    d += (static_cast<double>(w[i]) - target[i]) * (static_cast<double>(w[i]) - target[i]);
    t += static_cast<double>(target[i]) * target[i];
  }
  return std::sqrt(d / t);
}

class Convergence : public ::testing::TestWithParam<std::size_t> {};

TEST_P(Convergence, LeastSquaresToThePlantedOptimum) {
  const ConvergenceCase& c = cases()[GetParam()];
  ObjectiveSpec spec;
  spec.samples = 256;
  auto data = make_dataset(spec);
  ASSERT_TRUE(data.ok());
  for (std::uint32_t workers : {1u, 2u, 4u, 8u}) {
    auto run = simulate(least_squares(c, workers));
    ASSERT_TRUE(run.ok()) << c.preset << " P=" << workers << ": " << run.status().to_string();
    const double dist = relative_distance(run->final_params, data->planted);
    std::printf(
        "[ converge ] %-34s P=%u lr %-6g steps %-5u loss %.3e -> %.3e  |W-W*|/|W*| %.3e "
        "(tolerance %.0e)\n",
        c.preset, workers, c.lr, c.steps, run->initial_loss, run->steps.back().loss, dist,
        c.tolerance);
    EXPECT_LE(dist, c.tolerance) << c.preset << " P=" << workers << " (" << c.why << ")";
  }
}

std::string case_name(const ::testing::TestParamInfo<std::size_t>& info) {
  std::string name = cases()[info.param].preset;
  const std::size_t colon = name.find(':');
  if (colon != std::string::npos) name = name.substr(0, colon);
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllPresets, Convergence, ::testing::Range<std::size_t>(0, 16), case_name);

TEST(ConvergenceTable, CoversEveryPreset) {
  ASSERT_EQ(cases().size(), preset_catalog().size());
  for (std::size_t i = 0; i < cases().size(); ++i) {
    auto p = parse_preset(cases()[i].preset);
    ASSERT_TRUE(p.ok()) << cases()[i].preset;
    EXPECT_EQ(p->kind, preset_catalog()[i].kind) << cases()[i].preset;
  }
}

// The dense sgdm run is the reference the tolerances are stated against: it reaches W* itself.
TEST(ConvergenceTable, DenseSgdmReachesThePlantedModel) {
  auto run = simulate(least_squares(cases()[0], 4));
  ASSERT_TRUE(run.ok()) << run.status().to_string();
  EXPECT_LT(run->steps.back().loss, 1e-9 * run->initial_loss);
}

// Label-skewed data: gmc and dgc (local momentum) run with 4 workers; their final losses are
// recorded in the output. No ordering between them is asserted (the spec guarantees none); each
// must end finite and below its initial loss.
TEST(ConvergenceNonIid, GmcAndDgcRunOnLabelSkewedData) {
  for (ObjectiveKind kind : {ObjectiveKind::kLogistic, ObjectiveKind::kLeastSquares}) {
    for (const char* preset : {"gmc:up.density=0.125", "dgc:density=0.125", "sgdm"}) {
      SimulatorConfig cfg = problem(preset, 4, kind);
      cfg.split = DataSplit::kNonIid;
      cfg.skew = 0.8;
      cfg.batch = 16;
      cfg.steps = 600;
      cfg.lr = 0.02;
      auto run = simulate(cfg);
      ASSERT_TRUE(run.ok()) << preset << ": " << run.status().to_string();
      const double final_loss = run->steps.back().loss;
      std::printf("[ non-iid ] %-9s %-22s P=4 skew 0.8 batch 16: loss %.4f -> %.4f\n",
                  objective_name(kind), preset, run->initial_loss, final_loss);
      EXPECT_TRUE(std::isfinite(final_loss)) << preset;
      EXPECT_LT(final_loss, run->initial_loss) << preset;
    }
  }
}

}  // namespace
}  // namespace gradcomp::ref
