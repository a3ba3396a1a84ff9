// Preset case strings: round trips, canonical defaults, compressor slots, and what each preset
// resolves to (the configuration of the step pipeline, algorithms.md §3.3).
#include <gtest/gtest.h>

#include <string>

#include "gradcomp/preset.hpp"

namespace gradcomp {
namespace {

PresetDesc preset_or_die(const std::string& text) {
  auto r = parse_preset(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().to_string();
  return r.ok() ? r.value() : PresetDesc{};
}

PipelineConfig resolve_or_die(const std::string& text, std::uint64_t n = 100) {
  auto r = resolve_preset(preset_or_die(text), n, {});
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().to_string();
  return r.ok() ? r.value() : PipelineConfig{};
}

TEST(Presets, EveryPresetOfTheIssueExistsAndRoundTrips) {
  const char* const names[] = {"sgdm",          "ef-sgd",       "signum-mv",
                               "signsgd-mv",    "dist-ef-sgdm", "dgc",
                               "qsparse-local", "pqasgd",       "sparse-param-avg",
                               "cser",          "cser-pl",      "m-cser",
                               "gmc",           "gmc+",         "def-a",
                               "powersgd"};
  EXPECT_EQ(preset_catalog().size(), std::size(names));
  for (const char* name : names) {
    const PresetDesc p = preset_or_die(name);
    EXPECT_EQ(preset_name(p.kind), std::string(name));
    auto again = parse_preset(p.to_string());
    ASSERT_TRUE(again.ok()) << p.to_string() << ": " << again.status().to_string();
    EXPECT_EQ(again.value(), p);
    EXPECT_EQ(again->to_string(), p.to_string());
    EXPECT_TRUE(resolve_preset(p, 64, {}).ok()) << name;
  }
}

TEST(Presets, TheIssueExampleParsesAndResolves) {
  const auto p =
      preset_or_die("dgc:density=0.001,momentum=0.9,warmup=0.25/0.0625/0.015625/0.004/0.001");
  EXPECT_EQ(p.get("warmup"), "0.25/0.0625/0.015625/0.004/0.001");
  const auto c = resolve_or_die(p.to_string(), 1000);
  EXPECT_EQ(c.up.kind, CompressorKind::kDgc);
  EXPECT_EQ(c.up.density, 0.001);
  EXPECT_EQ(c.up.n, 1000u);
  EXPECT_EQ(c.warmup, (std::vector<double>{0.25, 0.0625, 0.015625, 0.004, 0.001}));
  EXPECT_TRUE(c.error_feedback);
  EXPECT_TRUE(c.momentum_masking);
  EXPECT_EQ(c.momentum_form, MomentumForm::kHeavyBall);
  EXPECT_EQ(c.momentum_placement, MomentumPlacement::kPre);
  EXPECT_EQ(c.lr_placement, LrPlacement::kOutside);
  EXPECT_TRUE(resolve_or_die("dgc:warmup=none").warmup.empty());
}

TEST(Presets, CanonicalFormFillsDefaultsInTableOrder) {
  EXPECT_EQ(preset_or_die("sgdm").to_string(), "sgdm:seed=0,momentum=0.9,nesterov=0,wd=0");
  EXPECT_EQ(preset_or_die("sgdm:wd=5e-4,momentum=0.90").to_string(),
            "sgdm:seed=0,momentum=0.9,nesterov=0,wd=0.0005");
  // The preset's own compressor defaults are printed (they differ from the compressor's).
  EXPECT_EQ(preset_or_die("gmc").to_string(), "gmc:seed=0,momentum=0.9,up=topk,up.density=0.01");
}

TEST(Presets, CompressorSlotsTakeSubOptions) {
  const auto p = preset_or_die("ef-sgd:up=topk,up.density=0.05,seed=3");
  EXPECT_EQ(p.get("up"), "topk");
  EXPECT_EQ(p.get("up.density"), "0.05");
  const auto c = resolve_or_die(p.to_string(), 200);
  EXPECT_EQ(c.up.kind, CompressorKind::kTopK);
  EXPECT_EQ(c.up.density, 0.05);
  EXPECT_EQ(c.up.seed, 3u);  // the preset's seed keys every compressor
  EXPECT_EQ(c.lr_placement, LrPlacement::kInside);
  // Switching the compressor drops the preset's defaults for the old one.
  const auto q = resolve_or_die("qsparse-local:up=randk");
  EXPECT_EQ(q.up.kind, CompressorKind::kRandK);
  EXPECT_EQ(q.up.density, 0.001);
  EXPECT_EQ(resolve_or_die("qsparse-local").up.levels, 4u);
  // A sub-option set to the compressor's own default is not printed twice.
  EXPECT_EQ(preset_or_die("ef-sgd:up=topk,up.density=0.001").to_string(),
            "ef-sgd:seed=0,up=topk,lr_placement=inside,momentum=0,wd=0");
}

TEST(Presets, RejectsBadInputWithTheKeyNamed) {
  struct Bad {
    const char* text;
    const char* part;
  };
  const Bad bad[] = {
      {"nosuch", "unknown preset"},
      {"sgdm:density=0.1", "unknown option 'density'"},
      {"sgdm:momentum=1", "momentum must be in [0, 1)"},
      {"sgdm:nesterov=2", "0 or 1"},
      {"dgc:warmup=0.5/x", "not a number"},
      {"dgc:warmup=0.5/0", "warm-up densities"},
      {"ef-sgd:up=nosuch", "unknown compressor"},
      {"ef-sgd:up.levels=3", "unknown option 'levels'"},
      {"ef-sgd:up.n=10", "set by the preset"},
      {"sgdm:up.density=0.1", "not a compressor slot"},
      {"cser:c1=topk", "not allowed here"},
      {"qsparse-local:period=0", "period must be >= 1"},
      {"dist-ef-sgdm:server=tree", "not one of the choices"},
  };
  for (const Bad& b : bad) {
    auto r = parse_preset(b.text);
    ASSERT_FALSE(r.ok()) << b.text << " was accepted";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << b.text;
    EXPECT_NE(r.status().message().find(b.part), std::string::npos)
        << b.text << " -> " << r.status().message();
  }
}

TEST(Presets, ResolveToThePipelineOfSection33) {
  const auto a4 = resolve_or_die("dist-ef-sgdm:block=8,server=chunked,wd=1e-4", 64);
  EXPECT_EQ(a4.family, Family::kSynchronous);
  EXPECT_EQ(a4.momentum_form, MomentumForm::kNesterov);
  EXPECT_EQ(a4.lr_placement, LrPlacement::kOutsideRescale);
  EXPECT_TRUE(a4.error_feedback && a4.two_way);
  EXPECT_EQ(a4.up.kind, CompressorKind::kBlockSign);
  EXPECT_EQ(a4.up.block, 8u);
  EXPECT_EQ(a4.down.kind, CompressorKind::kBlockSign);
  EXPECT_EQ(a4.server, ServerTopology::kChunked);
  EXPECT_EQ(a4.weight_decay_form, WeightDecayForm::kNesterov);

  const auto a3 = resolve_or_die("signum-mv:tie=plus");
  EXPECT_EQ(a3.aggregation, Aggregation::kMajority);
  EXPECT_EQ(a3.majority_tie, MajorityTie::kPlus);
  EXPECT_EQ(a3.momentum_form, MomentumForm::kEma);
  EXPECT_FALSE(a3.error_feedback);
  EXPECT_EQ(resolve_or_die("signsgd-mv").momentum_form, MomentumForm::kNone);

  const auto a6 = resolve_or_die("qsparse-local:period=8,async=1");
  EXPECT_EQ(a6.family, Family::kLocalSteps);
  EXPECT_EQ(a6.period, 8u);
  EXPECT_TRUE(a6.async && a6.error_feedback);
  EXPECT_FALSE(resolve_or_die("pqasgd").error_feedback);

  const auto a8 = resolve_or_die("cser-pl");
  EXPECT_EQ(a8.family, Family::kPartialAvg);
  EXPECT_EQ(a8.c1.n, 0u) << "CSER-PL has no C1";
  EXPECT_EQ(a8.c2.kind, CompressorKind::kGrbs);
  EXPECT_EQ(resolve_or_die("m-cser").momentum_form, MomentumForm::kNesterov);
  EXPECT_EQ(resolve_or_die("cser").momentum_form, MomentumForm::kNone);

  EXPECT_TRUE(resolve_or_die("gmc").global_momentum);
  EXPECT_EQ(resolve_or_die("gmc+").detach, 0.3);
  const auto b = resolve_or_die("gmc+:option=b");
  EXPECT_FALSE(b.global_momentum);
  EXPECT_EQ(b.momentum_placement, MomentumPlacement::kPost);
  EXPECT_EQ(resolve_or_die("def-a").family, Family::kDetached);
  const auto ps = resolve_or_die("powersgd:rank=4");
  EXPECT_EQ(ps.aggregation, Aggregation::kPowerSgd);
  EXPECT_EQ(ps.up.rank, 4u);
  EXPECT_EQ(ps.momentum_placement, MomentumPlacement::kPost);
  EXPECT_TRUE(ps.nesterov_adds_buffer);
  EXPECT_FALSE(resolve_or_die("sgdm:nesterov=1").nesterov_adds_buffer);
  EXPECT_EQ(resolve_or_die("sgdm").up.kind, CompressorKind::kIdentity);
}

TEST(Presets, ResolveHandsTheLayoutToCompressors) {
  auto r = resolve_preset(preset_or_die("powersgd"), 30, {{5, 6}});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->up.shapes, (std::vector<std::vector<std::uint64_t>>{{5, 6}}));
  EXPECT_FALSE(resolve_preset(preset_or_die("powersgd"), 31, {{5, 6}}).ok())
      << "a layout that does not match n is an error";
}

}  // namespace
}  // namespace gradcomp
