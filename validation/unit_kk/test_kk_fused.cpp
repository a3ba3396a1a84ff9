// Fused EF worker step against its unfused reference composition (kk::fused_ef_reference_step,
// fused_ef_reference.hpp: ref_opt_sync.cpp's worker stage + ref::compress / ref::decompress +
// e = f32(p - q)), compared bitwise (payload, momentum, error) over several steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/kernels/fused_ef.hpp"
#include "gradcomp/kernels/fused_ef_reference.hpp"
#include "test_util.hpp"

namespace gradcomp {
namespace {

using kk::fused_ef_reference_step;
using kk::FusedEfParams;
using test::desc_or_die;
using test::normal_data;

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

std::string with_n(const std::string& text, std::uint64_t n) {
  return text + (text.find(':') == std::string::npos ? ":n=" : ",n=") + std::to_string(n);
}

void run_steps(const std::string& text, std::uint64_t n, FusedEfParams pa, int steps) {
  const CompressorDesc d = desc_or_die(with_n(text, n));
  SCOPED_TRACE(d.to_string() + " form " + std::to_string(int(pa.momentum_form)) + " lr " +
               std::to_string(int(pa.lr_placement)) + " ef " + std::to_string(pa.error_feedback));
  ASSERT_TRUE(kk::fused_ef_supports(d));
  std::vector<float> mk(n, 0.0f), ek(n, 0.0f), mr(n, 0.0f), er(n, 0.0f);
  const bool has_m = pa.momentum_form != MomentumForm::kNone;
  for (int t = 0; t < steps; ++t) {
    const std::vector<float> g = normal_data(n, 100 + static_cast<std::uint64_t>(t));
    pa.has_lr_prev = t > 0;
    pa.lr_prev = pa.lr;
    pa.lr = 0.1 / (1.0 + 0.5 * t);  // a decaying schedule, so the rescale factor matters
    const CompressContext ctx{static_cast<std::uint32_t>(t), 0, 1, {}, nullptr};
    std::vector<std::uint8_t> pk, pr;
    const Status sr = fused_ef_reference_step(d, ctx, pa, g, mr, er, pr);
    ASSERT_TRUE(sr.ok()) << sr.to_string();
    const Status sk =
        kk::fused_ef_compress(d, ctx, pa, g, has_m ? Span<float>(mk) : Span<float>(),
                              pa.error_feedback ? Span<float>(ek) : Span<float>(), pk);
    ASSERT_TRUE(sk.ok()) << sk.to_string();
    ASSERT_TRUE(pk == pr) << "payload differs at step " << t;
    if (has_m) {
      ASSERT_TRUE(same_bits(mk, mr)) << "momentum differs at step " << t;
    }
    if (pa.error_feedback) {
      ASSERT_TRUE(same_bits(ek, er)) << "error differs at step " << t;
    }
  }
}

TEST(KkFused, EfSgdBlocksign) {  // ef-sgd: no momentum, lr inside, EF on
  FusedEfParams pa;
  pa.lr_placement = LrPlacement::kInside;
  for (std::uint64_t n : {1ull, 31ull, 33ull, 1023ull, 4097ull, (1ull << 20) + 3}) {
    run_steps("blocksign", n, pa, 4);
    run_steps("blocksign:block=256,scale=l2", n, pa, 3);
    run_steps("blocksign:block=7,scale=none", n, pa, 3);
  }
}

// TernGrad (local scaler: shared scalers come from an allreduce outside this step), GRBS and
// RBGS: every momentum form and lr placement, with and without EF.
TEST(KkFused, TernGradGrbsRbgs) {
  for (const char* c : {"terngrad", "terngrad:clip=0,shapes={half}", "grbs:rho0=0.25",
                        "rbgs:density=0.1", "rbgs:density=0.2,align=partition", "rbgs:density=1"}) {
    for (int form = 0; form < 4; ++form) {
      for (LrPlacement lr : {LrPlacement::kInside, LrPlacement::kOutsideRescale}) {
        for (bool ef : {true, false}) {
          FusedEfParams pa;
          pa.momentum_form = static_cast<MomentumForm>(form);
          pa.momentum = 0.9;
          pa.lr_placement = lr;
          pa.error_feedback = ef;
          for (std::uint64_t n : {1ull, 33ull, 4097ull}) {
            std::string text = c;
            const auto at = text.find("{half}");
            if (at != std::string::npos) {
              if (n < 2) continue;
              text.replace(at, 6, std::to_string(n / 2) + "/" + std::to_string(n - n / 2));
            }
            run_steps(text, n, pa, 3);
          }
        }
      }
    }
  }
  run_steps("grbs:rho0=0.3,rho1=0.5,shapes=40x25/24", 1024, FusedEfParams{}, 4);
}

TEST(KkFused, DistEfSgdmBlocksign) {  // dist-ef-sgdm: momentum, lr outside (rescaled), EF on
  for (MomentumForm form : {MomentumForm::kHeavyBall, MomentumForm::kNesterov, MomentumForm::kEma,
                            MomentumForm::kNone}) {
    for (LrPlacement lr :
         {LrPlacement::kInside, LrPlacement::kOutside, LrPlacement::kOutsideRescale}) {
      FusedEfParams pa;
      pa.momentum_form = form;
      pa.momentum = 0.9;
      pa.lr_placement = lr;
      run_steps("blocksign:block=128", 4097, pa, 5);
      run_steps("blocksign", 1000, pa, 3);
    }
  }
}

TEST(KkFused, SgdmIdentityAndHalfFormats) {
  for (const char* c : {"identity", "fp16", "bf16"}) {
    FusedEfParams pa;
    pa.momentum_form = MomentumForm::kHeavyBall;
    pa.momentum = 0.9;
    pa.error_feedback = false;
    run_steps(c, 4097, pa, 3);
    pa.error_feedback = true;
    pa.lr_placement = LrPlacement::kOutsideRescale;
    run_steps(c, 1023, pa, 4);
  }
}

TEST(KkFused, SignumNoEf) {
  FusedEfParams pa;
  pa.momentum_form = MomentumForm::kHeavyBall;
  pa.momentum = 0.9;
  pa.error_feedback = false;
  for (std::uint64_t n : {1ull, 32ull, 33ull, 4097ull}) run_steps("sign", n, pa, 4);
}

TEST(KkFused, StateUntouchedOnError) {
  const std::uint64_t n = 100;
  const CompressorDesc d = desc_or_die(with_n("blocksign", n));
  FusedEfParams pa;
  pa.momentum_form = MomentumForm::kHeavyBall;
  pa.momentum = 0.5;
  std::vector<float> g = normal_data(n, 5), m = normal_data(n, 6), e = normal_data(n, 7);
  const std::vector<float> m0 = m, e0 = e;
  std::vector<std::uint8_t> payload = {4, 2};
  g[60] = std::nanf("");
  Status s = kk::fused_ef_compress(d, {}, pa, g, m, e, payload);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite);
  EXPECT_NE(s.message().find("grad[60]"), std::string::npos) << s.message();
  // p overflows to Inf (finite g, huge e): the compressor's check rejects it.
  g[60] = 1.0f;
  e[10] = 3e38f;
  pa.error_feedback = true;
  pa.lr_placement = LrPlacement::kOutsideRescale;
  pa.has_lr_prev = true;
  pa.lr_prev = 10.0;
  pa.lr = 1.0;
  std::vector<float> e1 = e;
  s = kk::fused_ef_compress(d, {}, pa, g, m, e, payload);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite) << s.to_string();
  EXPECT_TRUE(same_bits(e, e1));
  e = e0;
  std::vector<float> shorter(n - 1);
  EXPECT_EQ(kk::fused_ef_compress(d, {}, pa, g, shorter, e, payload).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(kk::fused_ef_compress(d, {}, pa, g, m, shorter, payload).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(same_bits(m, m0));
  EXPECT_TRUE(same_bits(e, e0));
  EXPECT_EQ(payload, (std::vector<std::uint8_t>{4, 2}));
  // Every valid descriptor kk:serial runs is supported; an invalid one is not.
  EXPECT_TRUE(kk::fused_ef_supports(desc_or_die("topk:n=10,k=2")));
  CompressorDesc bad = desc_or_die("topk:n=10,k=2");
  bad.kind = static_cast<CompressorKind>(250);  // no such compressor
  EXPECT_FALSE(kk::fused_ef_supports(bad));
}

// The compressors without an inline decoder (decode kind 6: their own decompress_accumulate
// with alpha = -1 forms e'): sparse, quantized, composed and low-rank, every momentum form and
// lr placement, with and without EF, over several steps (the error memory feeds back).
TEST(KkFused, SelectionQuantizersAndLowRank) {
  const char* const cases[] = {"topk:density=0.05",
                               "topk:k=3",
                               "dgc:density=0.01",
                               "dgc:density=0.01,selection=exact",
                               "threshold:tau=0.5",
                               "randk:density=0.1",
                               "randk:density=0.1,indices=private,rescale=unbiased",
                               "qsgd",
                               "qsgd:levels=7,bucket=100,norm=max",
                               "signtopk:density=0.05",
                               "qsgd_topk:density=0.05,scaled=1",
                               "qsgd_randk:density=0.05"};
  for (const char* c : cases) {
    for (std::uint64_t n : {1ull, 33ull, 4097ull}) {
      for (int form = 0; form < 4; ++form) {
        for (LrPlacement lr : {LrPlacement::kInside, LrPlacement::kOutsideRescale}) {
          FusedEfParams pa;
          pa.momentum_form = static_cast<MomentumForm>(form);
          pa.momentum = 0.9;
          pa.lr_placement = lr;
          run_steps(c, n, pa, 3);
        }
      }
    }
    FusedEfParams no_ef;
    no_ef.error_feedback = false;
    run_steps(c, 4097, no_ef, 2);
  }
  FusedEfParams pa;
  pa.momentum_form = MomentumForm::kNesterov;
  pa.momentum = 0.9;
  run_steps("powersgd:shapes=10x100/100,rank=2", 1100, pa, 3);
  run_steps("powersgd:shapes=33x70x3,rank=11", 6930, pa, 2);
}

// A compressor whose decoder runs between C and B (kind 6) must still leave the state alone
// when C fails: a p that overflows to Inf is rejected by top-k's nonfinite=error check.
TEST(KkFused, SelectionStateUntouchedOnError) {
  const std::uint64_t n = 100;
  const CompressorDesc d = desc_or_die(with_n("topk:density=0.1", n));
  FusedEfParams pa;
  pa.momentum_form = MomentumForm::kHeavyBall;
  pa.momentum = 0.5;
  pa.lr_placement = LrPlacement::kOutsideRescale;
  pa.has_lr_prev = true;
  pa.lr_prev = 10.0;
  pa.lr = 1.0;
  std::vector<float> g = normal_data(n, 5), m = normal_data(n, 6), e = normal_data(n, 7);
  e[10] = 3e38f;
  const std::vector<float> m0 = m, e0 = e;
  std::vector<std::uint8_t> payload = {4, 2};
  const Status s = kk::fused_ef_compress(d, {}, pa, g, m, e, payload);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite) << s.to_string();
  EXPECT_TRUE(same_bits(m, m0));
  EXPECT_TRUE(same_bits(e, e0));
  EXPECT_EQ(payload, (std::vector<std::uint8_t>{4, 2}));
}

// identity, fp16, bf16 and sign take the tiled path (tiles of 2048 elements), blocksign with
// word-aligned blocks of at most 8192 its per-block variant: every momentum form, lr placement
// and EF setting, with a partial last tile / block and a partial last sign word.
TEST(KkFused, TiledKindsEveryForm) {
  for (const char* c : {"identity", "fp16", "bf16", "sign", "blocksign:block=64",
                        "blocksign:block=96,scale=l2", "blocksign:block=8192,scale=none"}) {
    for (int form = 0; form < 4; ++form) {
      for (LrPlacement lr :
           {LrPlacement::kInside, LrPlacement::kOutside, LrPlacement::kOutsideRescale}) {
        for (bool ef : {true, false}) {
          FusedEfParams pa;
          pa.momentum_form = static_cast<MomentumForm>(form);
          pa.momentum = 0.9;
          pa.lr_placement = lr;
          pa.error_feedback = ef;
          run_steps(c, 6177, pa, 3);
          run_steps(c, 2048, pa, 2);
          run_steps(c, 31, pa, 2);
        }
      }
    }
  }
}

// One step from the given state on the tiled kinds: the fused step matches the reference bit
// for bit, or fails with the reference's code and leaves momentum, error and payload untouched.
void step_like_reference(const std::string& text, const std::vector<float>& g,
                         const std::vector<float>& m, const std::vector<float>& e,
                         StatusCode want) {
  const CompressorDesc d = desc_or_die(with_n(text, g.size()));
  SCOPED_TRACE(d.to_string());
  FusedEfParams pa;
  pa.momentum_form = MomentumForm::kHeavyBall;
  pa.momentum = 0.5;
  pa.lr_placement = LrPlacement::kOutsideRescale;
  pa.has_lr_prev = true;
  pa.lr_prev = 2.0;
  pa.lr = 1.0;
  std::vector<float> mr = m, er = e, mk = m, ek = e;
  std::vector<std::uint8_t> pr, pk = {4, 2};
  const Status sr = fused_ef_reference_step(d, {}, pa, g, mr, er, pr);
  ASSERT_EQ(sr.code(), want) << sr.to_string();
  const Status sk = kk::fused_ef_compress(d, {}, pa, g, mk, ek, pk);
  ASSERT_EQ(sk.code(), want) << sk.to_string();
  if (want == StatusCode::kSuccess) {
    EXPECT_TRUE(pk == pr);
    EXPECT_TRUE(same_bits(mk, mr));
    EXPECT_TRUE(same_bits(ek, er));
  } else {
    EXPECT_TRUE(same_bits(mk, m));
    EXPECT_TRUE(same_bits(ek, e));
    EXPECT_EQ(pk, (std::vector<std::uint8_t>{4, 2}));
  }
}

// The tiled path writes m, e and the payload tile by tile, so it may run only when nothing can
// fail: a bad value in the last tile (after earlier tiles would have been written) must still
// leave the state untouched, and under nonfinite=propagate the result must match the reference.
TEST(KkFused, TiledStateUntouchedOnError) {
  const std::uint64_t n = 5000;
  const std::vector<float> g = normal_data(n, 5), m = normal_data(n, 6), e = normal_data(n, 7);
  for (const char* c : {"identity", "fp16", "bf16", "sign", "blocksign:block=64"}) {
    step_like_reference(c, g, m, e, StatusCode::kSuccess);
    std::vector<float> bad_g = g, bad_e = e;
    bad_g[n - 1] = std::nanf("");
    step_like_reference(c, bad_g, m, e, StatusCode::kNonFinite);
    bad_e[n - 10] = 3e38f;  // p = u + 2 e overflows to Inf
    step_like_reference(c, g, m, bad_e, StatusCode::kNonFinite);
    const std::string text(c);
    step_like_reference(
        text + (text.find(':') == std::string::npos ? ":" : ",") + "nonfinite=propagate", g, m,
        bad_e, StatusCode::kSuccess);
  }
  // Finite p that rounds to Inf in the format: fp16 >= 65520, bf16 >= 0x7f7f8000.
  std::vector<float> big_e = e;
  big_e[n - 10] = 40000.0f;
  step_like_reference("fp16", g, m, big_e, StatusCode::kNonFinite);
  step_like_reference("fp16:nonfinite=propagate", g, m, big_e, StatusCode::kSuccess);
  big_e[n - 10] = 32600.0f;  // |p| ~ 65200: above the bound's margin, below the overflow
  step_like_reference("fp16", g, m, big_e, StatusCode::kSuccess);
  big_e[n - 10] = 40000.0f;
  step_like_reference("identity", g, m, big_e, StatusCode::kSuccess);
  big_e[n - 10] = 1.6999e38f;
  step_like_reference("bf16", g, m, big_e, StatusCode::kNonFinite);
  step_like_reference("bf16:nonfinite=propagate", g, m, big_e, StatusCode::kSuccess);
  step_like_reference("identity", g, m, big_e, StatusCode::kSuccess);
  step_like_reference("sign", g, m, big_e, StatusCode::kSuccess);
  step_like_reference("blocksign:block=64,scale=l2", g, m, big_e, StatusCode::kSuccess);
}

}  // namespace
}  // namespace gradcomp
