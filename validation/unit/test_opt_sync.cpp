// The synchronous engine (reference/ref_opt_sync.cpp): worked examples 2 and 3 of
// algorithms.md §8, the equivalences E1-E4, E10, E12 of §3.4, EF telescoping (§8.1), majority
// vote, the chunked server, communication accounting, failure atomicity, and the EF-SignSGD
// counterexample. Gradients are built by hand (no simulator).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gradcomp/chunking.hpp"
#include "gradcomp/preset.hpp"
#include "gradcomp/ref/optimizer.hpp"
#include "test_util.hpp"

namespace gradcomp {
namespace {

using ref::CommRecord;
using ref::Optimizer;
using ref::StepInput;
using Shapes = std::vector<std::vector<std::uint64_t>>;
using Vec = std::vector<float>;

std::unique_ptr<Optimizer> make(const std::string& preset, std::uint32_t workers, const Vec& x0,
                                const Shapes& shapes = {}) {
  auto desc = parse_preset(preset);
  EXPECT_TRUE(desc.ok()) << preset << ": " << desc.status().to_string();
  if (!desc.ok()) return nullptr;
  auto opt = Optimizer::create(desc.value(), workers, x0, shapes);
  EXPECT_TRUE(opt.ok()) << preset << ": " << opt.status().to_string();
  if (!opt.ok()) return nullptr;
  return std::move(opt).value();
}

Vec to_vec(Span<const float> s) { return Vec(s.begin(), s.end()); }

// Worker i's gradient at `point`: a strongly convex quadratic with per-worker curvature and
// centre, plus deterministic per-step noise (so compressors see changing inputs).
struct Quadratic {
  std::uint64_t n;
  std::uint32_t workers;
  std::vector<Vec> curvature, centre;
  Quadratic(std::uint64_t n_, std::uint32_t workers_) : n(n_), workers(workers_) {
    for (std::uint32_t i = 0; i < workers; ++i) {
      Vec a = test::normal_data(n, 100 + i), b = test::normal_data(n, 200 + i);
      for (float& v : a) v = 0.5f + 0.25f * std::fabs(v);
      curvature.push_back(a);
      centre.push_back(b);
    }
  }
  Vec grad(std::uint32_t i, Span<const float> x, std::uint32_t t) const {
    const Vec noise = test::normal_data(n, 1000 + 97 * t + i);
    Vec g(n);
    for (std::uint64_t j = 0; j < n; ++j)
      g[j] = curvature[i][j] * (x[j] - centre[i][j]) + 0.1f * noise[j];
    return g;
  }
};

using LrFn = std::function<double(std::uint32_t)>;
double constant_lr(std::uint32_t) { return 0.05; }
// Warm-up, then step decays: every kind of lr change E1 must survive.
double schedule_lr(std::uint32_t t) {
  if (t < 4) return 0.02 * (t + 1);
  return t < 12 ? 0.1 : (t < 20 ? 0.03 : 0.007);
}

// Runs `steps` steps; returns the model after every step.
std::vector<Vec> trajectory(Optimizer& opt, const Quadratic& q, std::uint32_t steps, LrFn lr) {
  std::vector<Vec> xs;
  for (std::uint32_t t = 0; t < steps; ++t) {
    std::vector<Vec> grads;
    for (std::uint32_t i = 0; i < opt.workers(); ++i)
      grads.push_back(q.grad(i, opt.gradient_point(i), t));
    StepInput in;
    in.step = t;
    in.lr = lr(t);
    Status s = opt.step(in, grads, nullptr);
    EXPECT_TRUE(s.ok()) << s.to_string();
    xs.push_back(to_vec(opt.model(0)));
  }
  return xs;
}

std::vector<Vec> run(const std::string& preset, std::uint32_t workers, std::uint64_t n,
                     std::uint32_t steps, LrFn lr, const Shapes& shapes = {}) {
  auto opt = make(preset, workers, Vec(n, 0.0f), shapes);
  if (!opt) return {};
  return trajectory(*opt, Quadratic(n, workers), steps, lr);
}

double max_abs_diff(const std::vector<Vec>& a, const std::vector<Vec>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (std::size_t t = 0; t < std::min(a.size(), b.size()); ++t)
    for (std::size_t j = 0; j < a[t].size(); ++j)
      worst = std::max(worst, std::fabs(static_cast<double>(a[t][j]) - b[t][j]));
  return worst;
}

void expect_bitwise(const std::vector<Vec>& a, const std::vector<Vec>& b) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (std::size_t t = 0; t < a.size(); ++t)
    ASSERT_EQ(a[t], b[t]) << "first difference at step " << t;
}

void expect_near(const Vec& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t j = 0; j < want.size(); ++j)
    EXPECT_NEAR(got[j], want[j], tol) << what << "[" << j << "]";
}

Status step(Optimizer& opt, const std::vector<Vec>& grads, double lr, std::uint32_t t = 0,
            CommRecord* comm = nullptr, std::uint32_t epoch = 0) {
  StepInput in;
  in.step = t;
  in.lr = lr;
  in.epoch = epoch;
  return opt.step(in, grads, comm);
}

// ---- worked examples (algorithms.md §8) -------------------------------------------------------

// Example 2: dist-EF-SGDM, M = 2, one block per worker/server, mu = 0.9, eta = 0.1, x0 = 0.
// The expected numbers are the spec's (hand-computed); 1e-6 absorbs f32 rounding of O(1) values.
TEST(OptSyncExamples, DistEfSgdmExample2) {
  auto opt = make("dist-ef-sgdm:momentum=0.9,server=ps", 2, Vec(4, 0.0f));
  ASSERT_TRUE(opt);
  const double tol = 1e-6;
  ASSERT_TRUE(step(*opt, {{1, -2, 0.5, 0}, {0.5, 1, -1, 2}}, 0.1, 0).ok());
  expect_near(to_vec(opt->model(0)), {-0.106875, -0.106875, 0.106875, -0.106875}, tol, "x1");
  expect_near(opt->worker_error(0), {0.2375, -2.1375, -0.7125, -1.6625}, tol, "e0 after t=0");
  expect_near(opt->worker_error(1), {-1.1875, -0.2375, 0.2375, 1.6625}, tol, "e1 after t=0");
  expect_near(opt->server_error(), {0.83125, -0.83125, 0.83125, 0.83125}, tol, "server e");

  ASSERT_TRUE(step(*opt, {{0, 1, 1, -1}, {2, 0, 0, 1}}, 0.1, 1).ok());
  expect_near(to_vec(opt->model(0)), {-0.240375, 0.026625, -0.026625, -0.240375}, tol, "x2");
  expect_near(opt->server_error(), {1.671875, 0.664375, -0.664375, -0.343125}, tol, "server e");
  // e_i = p_i - Delta_i with the spec's p and Delta of t = 1.
  expect_near(opt->worker_error(0),
              {1.0475 - 2.015, -1.8575 + 2.015, 1.5925 - 2.015, -3.5625 + 2.015}, tol,
              "e0 after t=1");
  expect_near(opt->worker_error(1),
              {3.0175 - 2.33625, 0.5725 - 2.33625, -0.5725 + 2.33625, 5.1825 - 2.33625}, tol,
              "e1 after t=1");
  // §8.1: x2 - 0.1 (mean e + server e) = -0.1 * sum_t mean_i u_t,i.
  const Vec x = to_vec(opt->model(0)), e0 = opt->worker_error(0), e1 = opt->worker_error(1),
            es = opt->server_error();
  const std::vector<double> want = {-0.39325, 0.0405, -0.02725, -0.271};
  for (int j = 0; j < 4; ++j)
    EXPECT_NEAR(x[j] - 0.1 * ((e0[j] + e1[j]) / 2.0 + es[j]), want[j], tol) << j;
}

// Example 3: DGC momentum correction and momentum-factor masking, one worker, exact top-1.
// eta = 1 and x0 = 0, so x_t = -(sum of what was sent).
TEST(OptSyncExamples, DgcExample3) {
  auto opt =
      make("dgc:density=0.25,momentum=0.9,selection=exact,warmup=none,masking=1", 1, Vec(4, 0.0f));
  ASSERT_TRUE(opt);
  const double tol = 1e-7;
  ASSERT_TRUE(step(*opt, {{0.3f, -0.1f, 0.2f, 0.05f}}, 1.0, 0).ok());
  expect_near(to_vec(opt->model(0)), {-0.3, 0, 0, 0}, tol, "x1 (sent [0.3, 0, 0, 0])");
  expect_near(opt->worker_error(0), {0, -0.1, 0.2, 0.05}, tol, "v after t=0");
  ASSERT_TRUE(step(*opt, {{0.1f, 0.4f, -0.3f, 0.0f}}, 1.0, 1).ok());
  expect_near(to_vec(opt->model(0)), {-0.3, -0.21, 0, 0}, tol, "x2 (sent [0, 0.21, 0, 0])");
  expect_near(opt->worker_error(0), {0.1, 0, 0.08, 0.095}, tol, "v after t=1");
  // Continuation (hand-computed from the spec's u = [0.1, 0, -0.12, 0.045]): with g = 0,
  // u = 0.9 u and v = v + u = [0.19, 0, -0.028, 0.1355], so index 0 is sent. Without masking
  // u[1] would still be 0.31 and index 1 (v = 0.279) would win.
  ASSERT_TRUE(step(*opt, {{0, 0, 0, 0}}, 1.0, 2).ok());
  expect_near(to_vec(opt->model(0)), {-0.49, -0.21, 0, 0}, tol, "x3 (sent [0.19, 0, 0, 0])");
  expect_near(opt->worker_error(0), {0, 0, -0.028, 0.1355}, tol, "v after t=2");
}

// ---- equivalences (algorithms.md §3.4) --------------------------------------------------------

// E1: lr INSIDE == OUTSIDE_RESCALE for a homogeneous compressor under a changing lr. The two
// differ only by f32 rounding (eta*u is rounded before the memory is added, or after): blocksign
// is homogeneous, so no decision changes unless some |p_j| were within a few ulps of 0; the
// per-step relative difference is O(1e-7) and it accumulates over 30 steps, hence 2e-5 on
// O(1) iterates. Threshold-v (not homogeneous) is the negative control.
TEST(OptSyncE1, InsideEqualsOutsideRescaleDistEf) {
  const auto inside = run("dist-ef-sgdm:block=16,lr_placement=inside", 4, 64, 30, schedule_lr);
  const auto outside =
      run("dist-ef-sgdm:block=16,lr_placement=outside_rescale", 4, 64, 30, schedule_lr);
  EXPECT_LT(max_abs_diff(inside, outside), 2e-5);
  EXPECT_GT(std::fabs(outside.back()[0] - outside.front()[0]), 0.01);  // it moved
}

TEST(OptSyncE1, ThresholdIsNotHomogeneousNegativeControl) {
  const auto inside =
      run("ef-sgd:up=threshold,up.tau=0.3,lr_placement=inside", 4, 64, 30, schedule_lr);
  const auto outside =
      run("ef-sgd:up=threshold,up.tau=0.3,lr_placement=outside_rescale", 4, 64, 30, schedule_lr);
  EXPECT_GT(max_abs_diff(inside, outside), 1e-2);
}

// E2: EF-SGD (scaled sign, one block) == dist-EF with M = 1, mu = 0. The server re-compresses
// an already scaled-sign vector: its L1 scale is the same f32 value (n equal terms summed
// exactly in double), so the server is the identity and its memory stays 0 — bitwise.
TEST(OptSyncE2, EfSignSgdEqualsDistEfOneWorkerNoMomentum) {
  for (const char* placement : {"inside", "outside_rescale"}) {
    SCOPED_TRACE(placement);
    const std::string lp = std::string(",lr_placement=") + placement;
    expect_bitwise(run("ef-sgd:up=blocksign" + lp, 1, 40, 25, schedule_lr),
                   run("dist-ef-sgdm:momentum=0,block=0" + lp, 1, 40, 25, schedule_lr));
  }
}

// E3: signSGD-MV is Signum-MV with beta = 0 (bitwise), for odd and even P.
TEST(OptSyncE3, SignSgdMvIsSignumBetaZero) {
  for (std::uint32_t p : {3u, 4u}) {
    expect_bitwise(run("signsgd-mv", p, 33, 20, schedule_lr),
                   run("signum-mv:beta=0", p, 33, 20, schedule_lr));
  }
  // And beta matters (the comparison can fail).
  EXPECT_GT(max_abs_diff(run("signsgd-mv", 3, 33, 20, schedule_lr),
                         run("signum-mv:beta=0.9", 3, 33, 20, schedule_lr)),
            1e-3);
}

// E4: DGC with mu = 0, no masking, no clipping, exact top-k, no warm-up == top-k EF-SGD. DGC
// keeps lr-free memory without rescaling (OUTSIDE); ef-sgd's OUTSIDE_RESCALE multiplies by
// eta/eta = 1 exactly at constant lr, so the two are bitwise equal there.
TEST(OptSyncE4, PlainDgcEqualsTopkEfSgd) {
  expect_bitwise(
      run("dgc:density=0.1,momentum=0,masking=0,clip=0,selection=exact,warmup=none", 3, 50, 25,
          constant_lr),
      run("ef-sgd:up=topk,up.density=0.1,lr_placement=outside_rescale", 3, 50, 25, constant_lr));
  // With momentum the two differ (the comparison can fail).
  EXPECT_GT(max_abs_diff(run("dgc:density=0.1,momentum=0.5,masking=0,selection=exact,warmup=none",
                             3, 50, 25, constant_lr),
                         run("ef-sgd:up=topk,up.density=0.1,lr_placement=outside_rescale", 3, 50,
                             25, constant_lr)),
            1e-3);
}

// EF-SGD with the identity compressor is plain synchronous SGD: the memory stays exactly 0.
// Bitwise with lr-free memory; lr INSIDE rounds eta*g before the mean (1e-6 on O(1) iterates).
TEST(OptSyncEquivalence, EfSgdIdentityIsSgd) {
  const auto sgd = run("sgdm:momentum=0", 3, 40, 25, schedule_lr);
  expect_bitwise(run("ef-sgd:up=identity,lr_placement=outside_rescale", 3, 40, 25, schedule_lr),
                 sgd);
  EXPECT_LT(
      max_abs_diff(run("ef-sgd:up=identity,lr_placement=inside", 3, 40, 25, schedule_lr), sgd),
      1e-6);
}

// Decoupled weight decay (S10) with its own momentum buffer is, by linearity, momentum SGD on
// g + lambda x: heavy ball (m = mu m + g + lambda x; x -= eta m) and Nesterov (x -= eta (g +
// lambda x + mu m)). Recomputed here in double; 1e-5 covers f32 rounding over 25 steps.
void check_decay_folded(const std::string& preset, bool nesterov) {
  SCOPED_TRACE(preset);
  const std::uint64_t n = 20;
  const std::uint32_t workers = 2;
  const double mu = 0.5, lambda = 0.1;
  const Vec x0 = test::normal_data(n, 3);
  auto opt = make(preset, workers, x0);
  ASSERT_TRUE(opt);
  const Quadratic q(n, workers);
  std::vector<double> x(x0.begin(), x0.end()), m(n, 0.0);
  double worst = 0.0;
  for (std::uint32_t t = 0; t < 25; ++t) {
    std::vector<Vec> grads;
    for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(q.grad(i, opt->model(0), t));
    ASSERT_TRUE(step(*opt, grads, schedule_lr(t), t).ok());
    for (std::uint64_t j = 0; j < n; ++j) {
      const double d = (static_cast<double>(grads[0][j]) + grads[1][j]) / 2 + lambda * x[j];
      m[j] = mu * m[j] + d;
      x[j] -= schedule_lr(t) * (nesterov ? d + mu * m[j] : m[j]);
      worst = std::max(worst, std::fabs(x[j] - opt->model(0)[j]));
    }
  }
  EXPECT_LT(worst, 1e-5);
}

TEST(OptSyncWeightDecay, DecoupledDecayIsMomentumOnDecayedGradient) {
  check_decay_folded("sgdm:momentum=0.5,wd=0.1", false);
  check_decay_folded("sgdm:momentum=0.5,nesterov=1,wd=0.1", true);
  // dist-EF with blocks of one element sends every value exactly (scale |v|), so it is
  // Nesterov SGD with Nesterov weight decay on the mean gradient (both EF memories stay 0).
  check_decay_folded("dist-ef-sgdm:momentum=0.5,block=1,wd=0.1", true);
  // DGC at density 1 without masking (masking would reset the momentum: all is sent), Nesterov
  // variant: the same.
  check_decay_folded("dgc:density=1,momentum=0.5,nesterov=1,masking=0,warmup=none,wd=0.1", true);
}

// S1: a worker gradient with ||g|| > clip / sqrt(P) is scaled to that norm (DGC). Density 1
// sends everything, so x1 = -eta * mean of the clipped gradients (hand-computed).
TEST(OptSyncClip, LocalClippingAtClipOverSqrtP) {
  auto opt = make("dgc:density=1,momentum=0,clip=1,warmup=none,masking=0", 4, Vec(2, 0.0f));
  ASSERT_TRUE(opt);
  // bound = 1 / sqrt(4) = 0.5: [3, 4] (norm 5) -> [0.3, 0.4]; [0, -1] -> [0, -0.5];
  // [0.3, 0] and [0, 0.5] (norm 0.5, not above the bound) are unchanged.
  ASSERT_TRUE(step(*opt, {{3, 4}, {0.3f, 0}, {0, -1}, {0, 0.5f}}, 1.0).ok());
  expect_near(to_vec(opt->model(0)), {-0.15, -0.1}, 1e-7, "x1");
}

// E10: PowerSGD at full rank reproduces the mean, so the run follows dense SGD with PowerSGD's
// weight decay and momentum (§5.9: a += wd x; m = mu m + a; x -= eta (a + m)), recomputed here
// from the gradients.
// Tolerance: Gram-Schmidt and the two products round to f32, so the reconstruction of the
// mean is exact only to ~1e-6 relative; over 20 steps 1e-4 absolute on O(1) iterates.
TEST(OptSyncE10, PowerSgdFullRankIsDenseMean) {
  const Shapes shapes = {{4, 3}, {5}, {3, 6}};
  const std::uint64_t n = 12 + 5 + 18;
  const std::uint32_t workers = 3;
  // wd = 0.01 joins the reduced gradient before the momentum (epfml default).
  auto opt = make("powersgd:rank=8,momentum=0.9,wd=0.01", workers, Vec(n, 0.0f), shapes);
  ASSERT_TRUE(opt);
  const Quadratic q(n, workers);
  std::vector<double> x(n, 0.0), m(n, 0.0);
  double worst = 0.0;
  for (std::uint32_t t = 0; t < 20; ++t) {
    std::vector<Vec> grads;
    for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(q.grad(i, opt->model(0), t));
    ASSERT_TRUE(step(*opt, grads, constant_lr(t), t).ok());
    for (std::uint64_t j = 0; j < n; ++j) {
      double a = 0.0;
      for (const auto& g : grads) a += g[j];
      a = a / workers + 0.01 * x[j];
      m[j] = 0.9 * m[j] + a;
      x[j] -= constant_lr(t) * (a + m[j]);
      worst = std::max(worst, std::fabs(x[j] - opt->model(0)[j]));
    }
  }
  EXPECT_LT(worst, 1e-4);
  // At rank 1 the same check fails: the low-rank approximation is lossy.
  auto lossy = make("powersgd:rank=1,momentum=0.9", workers, Vec(n, 0.0f), shapes);
  ASSERT_TRUE(lossy);
  std::vector<Vec> grads;
  for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(q.grad(i, lossy->model(0), 0));
  ASSERT_TRUE(step(*lossy, grads, 0.05, 0).ok());
  double dev = 0.0;
  for (std::uint64_t j = 0; j < n; ++j) {
    double a = 0.0;
    for (const auto& g : grads) a += g[j];
    dev = std::max(dev, std::fabs(-0.05 * 2.0 * a / workers - lossy->model(0)[j]));
  }
  EXPECT_GT(dev, 1e-3);
}

// E12: GMC's lemma. With z_t = w_t + b/(1-b)(w_t - w_{t-1}) - eta/(1-b) mean_k e_t,k (lr-free
// memory, constant eta), z_{t+1} = z_t - eta/(1-b) mean_k g_t,k for any compressor. Computed in
// double from the f32 states; the b/(1-b) = 9 amplification of f32 rounding of w gives ~1e-6,
// so the tolerance is 2e-5. The same check with lr-scaled memory units (1/(1-b) e) fails.
void check_gmc_lemma(const std::string& preset) {
  SCOPED_TRACE(preset);
  const std::uint64_t n = 48;
  const std::uint32_t workers = 3;
  const double beta = 0.9, eta = 0.05;
  auto opt = make(preset, workers, test::normal_data(n, 7));
  ASSERT_TRUE(opt);
  const Quadratic q(n, workers);
  auto z_of = [&](const Vec& w, const Vec& w_prev, double memory_units) {
    std::vector<double> z(n);
    for (std::uint64_t j = 0; j < n; ++j) {
      double e = 0.0;
      for (std::uint32_t k = 0; k < workers; ++k) e += opt->worker_error(k)[j];
      e /= workers;
      z[j] = w[j] + beta / (1 - beta) * (static_cast<double>(w[j]) - w_prev[j]) -
             memory_units / (1 - beta) * e;
    }
    return z;
  };
  Vec w_prev = to_vec(opt->model(0)), w = w_prev;
  double worst = 0.0, worst_wrong_units = 0.0;
  for (std::uint32_t t = 0; t < 30; ++t) {
    const auto z = z_of(w, w_prev, eta), z_wrong = z_of(w, w_prev, 1.0);
    std::vector<Vec> grads;
    for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(q.grad(i, opt->model(0), t));
    ASSERT_TRUE(step(*opt, grads, eta, t).ok());
    w_prev = w;
    w = to_vec(opt->model(0));
    const auto z_next = z_of(w, w_prev, eta), z_next_wrong = z_of(w, w_prev, 1.0);
    for (std::uint64_t j = 0; j < n; ++j) {
      double g = 0.0;
      for (const auto& gi : grads) g += gi[j];
      g /= workers;
      worst = std::max(worst, std::fabs(z_next[j] - (z[j] - eta / (1 - beta) * g)));
      worst_wrong_units = std::max(
          worst_wrong_units, std::fabs(z_next_wrong[j] - (z_wrong[j] - eta / (1 - beta) * g)));
    }
  }
  EXPECT_LT(worst, 2e-5);
  EXPECT_GT(worst_wrong_units, 1e-2);
}

TEST(OptSyncE12, GmcLemmaTopk) { check_gmc_lemma("gmc:momentum=0.9,up=topk,up.density=0.1"); }
TEST(OptSyncE12, GmcLemmaRbgs) { check_gmc_lemma("gmc:momentum=0.9,up=rbgs,up.density=0.125"); }

// ---- EF telescoping (§8.1) --------------------------------------------------------------------
// x_T - units * (mean_i e_T,i + e~_T) = x_0 - sum_t eta_t mean_i u_t,i, with u the momentum
// direction the test recomputes from the gradients it fed. Tolerance 1e-5: f32 rounding of
// O(1) quantities over 25 steps.

// Recomputes u for one worker: form "none", "hb" or "nesterov".
struct Direction {
  std::string form;
  double mu;
  std::vector<Vec> m;
  explicit Direction(std::string form_, double mu_ = 0.0) : form(std::move(form_)), mu(mu_) {}
  Vec operator()(std::uint32_t i, const Vec& g) {
    if (m.size() <= i) m.resize(i + 1, Vec(g.size(), 0.0f));
    Vec u(g.size());
    for (std::size_t j = 0; j < g.size(); ++j) {
      if (form == "none") {
        u[j] = g[j];
        continue;
      }
      m[i][j] = static_cast<float>(mu * m[i][j] + g[j]);
      u[j] = form == "hb" ? m[i][j] : static_cast<float>(g[j] + mu * m[i][j]);
    }
    return u;
  }
};

void check_telescoping(const std::string& preset, Direction dir, LrFn lr, bool lr_scaled_memory) {
  SCOPED_TRACE(preset);
  const std::uint64_t n = 40;
  const std::uint32_t workers = 3;
  const Vec x0 = test::normal_data(n, 5);
  auto opt = make(preset, workers, x0);
  ASSERT_TRUE(opt);
  const Quadratic q(n, workers);
  std::vector<double> rhs(x0.begin(), x0.end());
  double last_lr = 0.0;
  for (std::uint32_t t = 0; t < 25; ++t) {
    std::vector<Vec> grads;
    for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(q.grad(i, opt->model(0), t));
    for (std::uint32_t i = 0; i < workers; ++i) {
      const Vec u = dir(i, grads[i]);
      for (std::uint64_t j = 0; j < n; ++j) rhs[j] -= lr(t) * u[j] / workers;
    }
    ASSERT_TRUE(step(*opt, grads, lr(t), t).ok());
    last_lr = lr(t);
  }
  const double units = lr_scaled_memory ? 1.0 : last_lr;
  const Vec x = to_vec(opt->model(0)), es = opt->server_error();
  double worst = 0.0, memory = 0.0;
  for (std::uint64_t j = 0; j < n; ++j) {
    double e = 0.0;
    for (std::uint32_t i = 0; i < workers; ++i) e += opt->worker_error(i)[j];
    e = e / workers + es[j];
    memory = std::max(memory, std::fabs(e));
    worst = std::max(worst, std::fabs(x[j] - units * e - rhs[j]));
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(memory * units, 1e-3);  // the memories are not trivially zero
}

TEST(OptSyncTelescoping, EfSgdLrInsideAnySchedule) {
  check_telescoping("ef-sgd:up=blocksign", Direction("none"), schedule_lr, true);
  check_telescoping("ef-sgd:up=topk,up.density=0.1", Direction("none"), schedule_lr, true);
}
TEST(OptSyncTelescoping, DistEfSgdmConstantLr) {
  check_telescoping("dist-ef-sgdm:momentum=0.9,block=8", Direction("nesterov", 0.9), constant_lr,
                    false);
  check_telescoping("dist-ef-sgdm:momentum=0.9,block=12,server=chunked", Direction("nesterov", 0.9),
                    constant_lr, false);
}
TEST(OptSyncTelescoping, DgcConstantLr) {
  check_telescoping("dgc:density=0.1,momentum=0.9,masking=0,warmup=none", Direction("hb", 0.9),
                    constant_lr, false);
}

// PowerSGD: momentum acts after the reduce, so telescope per step: the aggregate is
// out_t = mean(g_t) + mean(e_t) - mean(e_t+1), and x follows §5.9's update of out_t.
TEST(OptSyncTelescoping, PowerSgdPerStep) {
  const Shapes shapes = {{6, 5}, {4}};
  const std::uint64_t n = 34;
  const std::uint32_t workers = 2;
  auto opt = make("powersgd:rank=1,momentum=0.9", workers, Vec(n, 0.0f), shapes);
  ASSERT_TRUE(opt);
  const Quadratic q(n, workers);
  std::vector<double> x(n, 0.0), m(n, 0.0), e_mean(n, 0.0);
  double worst = 0.0, memory = 0.0;
  for (std::uint32_t t = 0; t < 25; ++t) {
    std::vector<Vec> grads;
    for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(q.grad(i, opt->model(0), t));
    ASSERT_TRUE(step(*opt, grads, 0.05, t).ok());
    for (std::uint64_t j = 0; j < n; ++j) {
      const double e_next =
          (static_cast<double>(opt->worker_error(0)[j]) + opt->worker_error(1)[j]) / 2;
      const double out = (static_cast<double>(grads[0][j]) + grads[1][j]) / 2 + e_mean[j] - e_next;
      e_mean[j] = e_next;
      memory = std::max(memory, std::fabs(e_next));
      m[j] = 0.9 * m[j] + out;
      x[j] -= 0.05 * (out + m[j]);
      worst = std::max(worst, std::fabs(x[j] - opt->model(0)[j]));
    }
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(memory, 1e-2);
}

// ---- majority vote ----------------------------------------------------------------------------

TEST(OptSyncMajority, EvenSplitFollowsTiePolicy) {
  // sgn(0) = +1 at the workers: column 1 is +1 vs -1 -> tie, column 2 is 0 (+1) vs -1 -> tie.
  const std::vector<Vec> grads = {{1, -1, 0, -1}, {1, 1, -2, -3}};
  auto zero = make("signsgd-mv:tie=zero", 2, Vec(4, 0.0f));
  auto plus = make("signsgd-mv:tie=plus", 2, Vec(4, 0.0f));
  ASSERT_TRUE(zero && plus);
  CommRecord comm;
  ASSERT_TRUE(step(*zero, grads, 0.5, 0, &comm).ok());
  ASSERT_TRUE(step(*plus, grads, 0.5).ok());
  EXPECT_EQ(to_vec(zero->model(0)), (Vec{-0.5f, 0.0f, 0.0f, 0.5f}));
  EXPECT_EQ(to_vec(plus->model(0)), (Vec{-0.5f, -0.5f, -0.5f, 0.5f}));
  EXPECT_EQ(comm.up, (std::vector<std::uint64_t>{36, 36}));  // 32-byte header + one sign word
  EXPECT_EQ(comm.down, (std::vector<std::uint64_t>{36, 36}));
}

TEST(OptSyncMajority, OddWorkersAndSignumWeightDecay) {
  const std::vector<Vec> grads = {{1, -1, 2, -1}, {-1, -1, 3, 1}, {1, 1, -4, 1}};
  auto opt = make("signsgd-mv", 3, Vec(4, 1.0f));
  ASSERT_TRUE(opt);
  ASSERT_TRUE(step(*opt, grads, 0.25).ok());
  // votes [+1, -1, +1, +1]; never a tie with odd P.
  EXPECT_EQ(to_vec(opt->model(0)), (Vec{0.75f, 1.25f, 0.75f, 0.75f}));
  // Signum: m = (1 - beta) g at t = 0 has the signs of g; x <- x - eta (V + lambda x).
  auto signum = make("signum-mv:beta=0.5,wd=0.5", 3, Vec(4, 1.0f));
  ASSERT_TRUE(signum);
  ASSERT_TRUE(step(*signum, grads, 0.25).ok());
  EXPECT_EQ(to_vec(signum->model(0)), (Vec{0.625f, 1.125f, 0.625f, 0.625f}));
}

// ---- chunked server ---------------------------------------------------------------------------

TEST(OptSyncChunked, ChunkBounds) {
  using C = ChunkRange;
  EXPECT_EQ(chunk_bounds(200, 3), (std::vector<C>{{0, 96}, {96, 192}, {192, 200}}));
  EXPECT_EQ(chunk_bounds(10, 4), (std::vector<C>{{0, 10}, {10, 10}, {10, 10}, {10, 10}}));
  EXPECT_EQ(chunk_bounds(128, 4), (std::vector<C>{{0, 32}, {32, 64}, {64, 96}, {96, 128}}));
  EXPECT_EQ(chunk_bounds(0, 2), (std::vector<C>{{0, 0}, {0, 0}}));
  EXPECT_TRUE(chunk_bounds(5, 0).empty());
}

// Blockwise scaled sign with the given blocks [begin, end), computed here from the definition.
std::vector<double> scaled_sign(const std::vector<double>& v,
                                const std::vector<std::pair<int, int>>& blocks) {
  std::vector<double> out(v.size());
  for (auto [b, e] : blocks) {
    double s = 0.0;
    for (int j = b; j < e; ++j) s += std::fabs(v[j]);
    s /= (e - b);
    for (int j = b; j < e; ++j) out[j] = v[j] >= 0 ? s : -s;
  }
  return out;
}

// P = 3 owners of n = 200: chunks [0,96) [96,192) [192,200); worker blocks of 50, so the block
// [50,100) straddles the first chunk edge and the owners use the pieces [50,96) and [96,100).
TEST(OptSyncChunked, ThreeOwnersBlockStraddlingAChunkEdge) {
  const std::uint64_t n = 200;
  const std::uint32_t workers = 3;
  auto opt = make("dist-ef-sgdm:momentum=0,block=50,server=chunked", workers, Vec(n, 0.0f));
  auto ps = make("dist-ef-sgdm:momentum=0,block=50,server=ps", workers, Vec(n, 0.0f));
  ASSERT_TRUE(opt && ps);
  std::vector<Vec> grads;
  for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(test::normal_data(n, 40 + i));
  CommRecord comm, comm_ps;
  ASSERT_TRUE(step(*opt, grads, 0.1, 0, &comm).ok());
  ASSERT_TRUE(step(*ps, grads, 0.1, 0, &comm_ps).ok());

  const std::vector<std::pair<int, int>> worker_blocks = {
      {0, 50}, {50, 100}, {100, 150}, {150, 200}};
  const std::vector<std::pair<int, int>> owner_pieces = {{0, 50},    {50, 96},   {96, 100},
                                                         {100, 150}, {150, 192}, {192, 200}};
  std::vector<double> mean(n, 0.0);
  for (const Vec& g : grads) {
    const auto d = scaled_sign(std::vector<double>(g.begin(), g.end()), worker_blocks);
    for (std::uint64_t j = 0; j < n; ++j) mean[j] += d[j] / workers;
  }
  const auto server = scaled_sign(mean, owner_pieces);
  const auto server_ps = scaled_sign(mean, worker_blocks);
  const Vec x = to_vec(opt->model(0)), x_ps = to_vec(ps->model(0)), es = opt->server_error();
  for (std::uint64_t j = 0; j < n; ++j) {
    EXPECT_NEAR(x[j], -0.1 * server[j], 1e-6) << j;
    EXPECT_NEAR(es[j], mean[j] - server[j], 1e-6) << j;
    EXPECT_NEAR(x_ps[j], -0.1 * server_ps[j], 1e-6) << j;
  }
  // The pieces of the straddling block carry their own scales; elsewhere PS == chunked.
  EXPECT_GT(std::fabs(x[60] - x_ps[60]), 1e-4);
  EXPECT_EQ(x[10], x_ps[10]);
  // Bytes: up = 32 + 4 ceil(200/32) + 4*4 blocks; down = the three owners' messages
  // (96 elements, 2 pieces) + (96, 3 pieces) + (8, 1 piece).
  const std::uint64_t up = 32 + 28 + 16;
  const std::uint64_t down = (32 + 12 + 8) + (32 + 12 + 12) + (32 + 4 + 4);
  EXPECT_EQ(comm.up, std::vector<std::uint64_t>(workers, up));
  EXPECT_EQ(comm.down, std::vector<std::uint64_t>(workers, down));
  EXPECT_EQ(comm_ps.down, std::vector<std::uint64_t>(workers, up));  // PS: one server message
}

// ---- communication accounting -----------------------------------------------------------------

struct CommCase {
  std::string preset;
  Shapes shapes;
  std::uint64_t up, down;  // per worker, from the payload formulas of docs/compressors.md
  std::uint32_t epoch = 100;
};

TEST(OptSyncComm, BytesEqualPayloadFormulas) {
  const std::uint64_t n = 1000;  // ceil(n / 32) = 32 sign words
  const std::uint32_t workers = 3;
  const std::vector<CommCase> cases = {
      {"sgdm", {}, 32 + 4 * n, 32 + 4 * n},
      {"ef-sgd:up=blocksign", {}, 32 + 128 + 4, 2 * (32 + 128 + 4)},
      {"ef-sgd:up=topk,up.density=0.01", {}, 32 + 8 * 10, 2 * (32 + 8 * 10)},
      {"ef-sgd:up=randk,up.density=0.01", {}, 32 + 4 * 10, 32 + 4 * 10},  // shared indices
      {"signum-mv", {}, 32 + 128, 32 + 128},
      {"dist-ef-sgdm", {}, 32 + 128 + 4, 32 + 128 + 4},
      {"dist-ef-sgdm:block=100", {}, 32 + 128 + 40, 32 + 128 + 40},
      {"gmc:up=rbgs,up.density=0.015625", {}, 32 + 4 * 15, 32 + 4 * 15},
      {"gmc:up=topk,up.density=0.01", {}, 32 + 8 * 10, 2 * (32 + 8 * 10)},
      {"powersgd:rank=2", {{20, 50}}, 32 + 4 * 2 * 70, 32 + 4 * 2 * 70},
      {"powersgd:rank=2", {{20, 40}, {200}}, 32 + 4 * (2 * 60 + 200), 32 + 4 * (2 * 60 + 200)},
      // DGC: exact selection on data without zeros sends exactly k values.
      {"dgc:density=0.01,selection=exact", {}, 32 + 8 * 10, 2 * (32 + 8 * 10)},
      // Warm-up epoch 1: density 0.0625 -> k = 63.
      {"dgc:density=0.01,selection=exact", {}, 32 + 8 * 63, 2 * (32 + 8 * 63), 1},
  };
  for (const CommCase& c : cases) {
    SCOPED_TRACE(c.preset + " epoch " + std::to_string(c.epoch));
    auto opt = make(c.preset, workers, Vec(n, 0.0f), c.shapes);
    ASSERT_TRUE(opt);
    const Quadratic q(n, workers);
    for (std::uint32_t t = 0; t < 2; ++t) {
      std::vector<Vec> grads;
      for (std::uint32_t i = 0; i < workers; ++i) grads.push_back(q.grad(i, opt->model(0), t));
      CommRecord comm;
      ASSERT_TRUE(step(*opt, grads, 0.05, t, &comm, c.epoch).ok());
      EXPECT_EQ(comm.up, std::vector<std::uint64_t>(workers, c.up));
      EXPECT_EQ(comm.down, std::vector<std::uint64_t>(workers, c.down));
    }
  }
}

// ---- learning-rate corner cases and detached points ----------------------------------------

// lr = 0 under OUTSIDE_RESCALE skips the step (nothing sent, eta_prev kept): the run equals one
// that never saw that step.
TEST(OptSyncLr, ZeroLrSkipsARescalingStep) {
  const std::uint64_t n = 24;
  const Quadratic q(n, 2);
  auto a = make("dist-ef-sgdm:block=8", 2, Vec(n, 0.0f));
  auto b = make("dist-ef-sgdm:block=8", 2, Vec(n, 0.0f));
  ASSERT_TRUE(a && b);
  auto grads_at = [&](Optimizer& o, std::uint32_t t) {
    return std::vector<Vec>{q.grad(0, o.model(0), t), q.grad(1, o.model(0), t)};
  };
  ASSERT_TRUE(step(*a, grads_at(*a, 0), 0.1, 0).ok());
  ASSERT_TRUE(step(*b, grads_at(*b, 0), 0.1, 0).ok());
  CommRecord comm;
  ASSERT_TRUE(step(*a, grads_at(*a, 1), 0.0, 1, &comm).ok());
  EXPECT_EQ(comm.up, (std::vector<std::uint64_t>{0, 0}));
  EXPECT_EQ(comm.down, (std::vector<std::uint64_t>{0, 0}));
  ASSERT_TRUE(step(*a, grads_at(*a, 2), 0.05, 2).ok());  // rescales by 0.1 / 0.05
  ASSERT_TRUE(step(*b, grads_at(*b, 2), 0.05, 2).ok());
  EXPECT_EQ(to_vec(a->model(0)), to_vec(b->model(0)));
  EXPECT_EQ(a->worker_error(1), b->worker_error(1));
  EXPECT_EQ(a->server_error(), b->server_error());
}

// GMC+ option A: worker k's gradient point is w - detach * eta * e_k (e lr-free, eta of the step
// that formed it).
TEST(OptSyncGmcPlus, DetachedGradientPoint) {
  const std::uint64_t n = 32;
  auto opt = make("gmc+:option=a,detach=0.5,up=rbgs,up.density=0.25", 2, Vec(n, 0.0f));
  ASSERT_TRUE(opt);
  const Quadratic q(n, 2);
  for (std::uint32_t t = 0; t < 3; ++t) {
    const double lr = 0.1 * (t + 1);
    std::vector<Vec> grads = {q.grad(0, opt->gradient_point(0), t),
                              q.grad(1, opt->gradient_point(1), t)};
    ASSERT_TRUE(step(*opt, grads, lr, t).ok());
    for (std::uint32_t k = 0; k < 2; ++k) {
      const Vec e = opt->worker_error(k);
      const Vec point = to_vec(opt->gradient_point(k));
      double moved = 0.0;
      for (std::uint64_t j = 0; j < n; ++j) {
        EXPECT_EQ(point[j], static_cast<float>(opt->model(0)[j] - 0.5 * lr * e[j])) << j;
        moved = std::max(moved, std::fabs(static_cast<double>(point[j]) - opt->model(0)[j]));
      }
      EXPECT_GT(moved, 1e-3);
    }
  }
}

// ---- failures change nothing ------------------------------------------------------------------

struct Snapshot {
  std::vector<Vec> points, errors;
  Vec model, server;
  explicit Snapshot(const Optimizer& o) : model(to_vec(o.model(0))), server(o.server_error()) {
    for (std::uint32_t i = 0; i < o.workers(); ++i) {
      points.push_back(to_vec(o.gradient_point(i)));
      errors.push_back(o.worker_error(i));
    }
  }
  bool operator==(const Snapshot& s) const {
    return points == s.points && errors == s.errors && model == s.model && server == s.server;
  }
};

TEST(OptSyncErrors, FailedStepLeavesStateUnchanged) {
  const std::uint64_t n = 30;
  const std::uint32_t workers = 2;
  for (const char* preset :
       {"dist-ef-sgdm:block=8", "dist-ef-sgdm:server=chunked", "dgc:density=0.1", "powersgd:rank=1",
        "gmc+:up=rbgs,up.density=0.25", "signum-mv", "sgdm:wd=0.01"}) {
    SCOPED_TRACE(preset);
    const Shapes shapes = std::string(preset).rfind("powersgd", 0) == 0 ? Shapes{{5, 6}} : Shapes{};
    auto a = make(preset, workers, Vec(n, 0.5f), shapes);
    auto b = make(preset, workers, Vec(n, 0.5f), shapes);
    ASSERT_TRUE(a && b);
    const Quadratic q(n, workers);
    auto grads_at = [&](Optimizer& o, std::uint32_t t) {
      return std::vector<Vec>{q.grad(0, o.gradient_point(0), t), q.grad(1, o.gradient_point(1), t)};
    };
    for (std::uint32_t t = 0; t < 3; ++t) {
      ASSERT_TRUE(step(*a, grads_at(*a, t), 0.1, t).ok());
      ASSERT_TRUE(step(*b, grads_at(*b, t), 0.1, t).ok());
    }
    const Snapshot before(*a);
    // NaN in worker 1: rejected up front.
    auto bad = grads_at(*a, 3);
    bad[1][7] = std::nanf("");
    EXPECT_EQ(step(*a, bad, 0.1, 3).code(), StatusCode::kNonFinite);
    EXPECT_TRUE(Snapshot(*a) == before);
    // A failure after every stage has run: eta so large that x overflows f32 (caught by the
    // final check, or by a compressor for lr-inside memories).
    EXPECT_EQ(step(*a, grads_at(*a, 3), 1e300, 3).code(), StatusCode::kNonFinite);
    EXPECT_TRUE(Snapshot(*a) == before);
    if (std::string(preset).rfind("dist-ef", 0) == 0) {
      // Worker 1's Nesterov direction g + mu m overflows f32 after worker 0 was compressed:
      // the blocksign compressor rejects it mid-step and still nothing changes.
      bad = grads_at(*a, 3);
      bad[1][3] = 3e38f;
      EXPECT_EQ(step(*a, bad, 0.1, 3).code(), StatusCode::kNonFinite);
      EXPECT_TRUE(Snapshot(*a) == before);
    }
    // Wrong sizes and a negative lr.
    bad = grads_at(*a, 3);
    bad[0].pop_back();
    EXPECT_EQ(step(*a, bad, 0.1, 3).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(step(*a, grads_at(*a, 3), -0.1, 3).code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Snapshot(*a) == before);
    // The run goes on exactly as one that never saw the failures.
    for (std::uint32_t t = 3; t < 5; ++t) {
      ASSERT_TRUE(step(*a, grads_at(*a, t), 0.1, t).ok());
      ASSERT_TRUE(step(*b, grads_at(*b, t), 0.1, t).ok());
    }
    EXPECT_TRUE(Snapshot(*a) == Snapshot(*b));
  }
}

// ---- the EF-SignSGD counterexample -----------------------------------------------------------
// Three workers, x in R^2. Workers 0 and 1: f = (x0 - 1)^2/2 + (x1 - 0.5)^2/2; worker 2:
// f = 10 (x0 + 1)^2/2 + (x1 - 0.5)^2/2. The optimum of the mean is x0* = (2 - 10)/(2 + 10) = -2/3,
// x1* = 0.5. For every x0 in (-1, 1) two of three workers push x0 up, so the majority vote
// points away from x0* on the whole interval (x0*, 1) where the mean gradient points down:
// signSGD-MV goes to x0 = 1. EF-SGD (scaled sign + error feedback) converges to x*.
TEST(OptSyncCounterexample, SignSgdMvFailsEfSgdConverges) {
  auto grads_at = [](Span<const float> x) {
    const float y = x[1] - 0.5f;
    return std::vector<Vec>{{x[0] - 1.0f, y}, {x[0] - 1.0f, y}, {10.0f * (x[0] + 1.0f), y}};
  };
  auto final_point = [&](const std::string& preset) {
    auto opt = make(preset, 3, Vec{0.0f, 0.0f});
    EXPECT_TRUE(opt);
    if (!opt) return Vec{};
    for (std::uint32_t t = 0; t < 3000; ++t) {
      const double lr = 0.05 / (1.0 + t / 100.0);
      std::vector<Vec> grads;
      for (std::uint32_t i = 0; i < 3; ++i) grads.push_back(grads_at(opt->gradient_point(i))[i]);
      EXPECT_TRUE(step(*opt, grads, lr, t).ok());
    }
    return to_vec(opt->model(0));
  };
  const double x_star = -2.0 / 3.0;
  const Vec sign = final_point("signsgd-mv");
  const Vec ef = final_point("ef-sgd:up=blocksign");
  EXPECT_NEAR(sign[0], 1.0, 0.05) << "signSGD-MV settles where the vote flips, not at x*";
  EXPECT_GT(std::fabs(sign[0] - x_star), 1.5);
  EXPECT_NEAR(ef[0], x_star, 1e-3);
  EXPECT_NEAR(ef[1], 0.5, 1e-3);
}

}  // namespace
}  // namespace gradcomp
