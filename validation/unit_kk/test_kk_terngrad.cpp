// terngrad on Kokkos against the reference, plus properties checked without either
// implementation's arithmetic (hand-derived payloads).
#include "kk_compare.hpp"

namespace gradcomp {
namespace {

using namespace kktest;

const CompressContext kCtxs[] = {{}, {3, 2, 1, {}, nullptr}, {17, 5, 3, {}, nullptr}};

TEST(KkTernGrad, MatchesReference) {
  for (const std::string text : {"terngrad", "terngrad:clip=0", "terngrad:clip=1,seed=5",
                                 "terngrad:clip=0.5,seed=9", "terngrad:nonfinite=propagate"}) {
    for (std::uint64_t n : test::edge_sizes())
      for (const auto& ctx : kCtxs) check_matches(text, n, ctx);
  }
  for (const auto& ctx : kCtxs) {
    check_matches("terngrad:shapes=4x8/64/3x3", 105, ctx);
    check_matches("terngrad:clip=0,shapes=17/1/1/33", 52, ctx);
  }
}

TEST(KkTernGrad, ConstantSegmentAndClipping) {
  // A constant segment has sigma = 0: the bound falls back to max|g|, so every element is kept
  // (|g| = s and u < 1): codes all +1 and the scaler equals the constant.
  const CompressorDesc d = test::desc_or_die("terngrad:n=40");
  const std::vector<float> in(40, 0.75f);
  std::vector<std::uint8_t> p;
  ASSERT_TRUE(kk_ops(d).compress(d, {}, in, p).ok());
  ASSERT_EQ(p.size(), kHeaderBytes + 12 + 4);
  for (int w = 0; w < 2; ++w) EXPECT_EQ(load_u32(p.data() + kHeaderBytes + 4 * w), 0xAAAAAAAAu);
  EXPECT_EQ(load_u32(p.data() + kHeaderBytes + 8), 0xAAAAu) << "8 codes of +1, zero padding";
  EXPECT_EQ(load_f32(p.data() + kHeaderBytes + 12), 0.75f);
  check_matches(d, {}, {}, in);
  // Clipping: a single outlier among zeros. mean = 10/n, sigma ~ 10/sqrt(n); with c = 1 the bound
  // is far below 10, so the outlier (clipped to the bound = scaler) is always kept, zeros never.
  const CompressorDesc dc = test::desc_or_die("terngrad:n=100,clip=1");
  std::vector<float> spike(100, 0.0f);
  spike[37] = -10.0f;
  ASSERT_TRUE(kk_ops(dc).compress(dc, {}, spike, p).ok());
  const float s = load_f32(p.data() + p.size() - 4);
  // mean -0.1: 99 deviations of 0.1 and one of -9.9.
  const double var = (0.01 * 99 + 9.9 * 9.9) / 100.0;
  EXPECT_FLOAT_EQ(s, static_cast<float>(std::sqrt(var))) << "bound = c * sigma";
  std::vector<float> out(100, 3.0f);
  ASSERT_TRUE(kk_ops(dc).decompress(dc, {}, p, Span<float>(out)).ok());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[i], i == 37 ? -s : 0.0f) << i;
  check_matches(dc, {}, {}, spike);
}

TEST(KkTernGrad, SharedScaler) {
  const CompressorDesc d = test::desc_or_die("terngrad:n=200,shapes=50/150,scaler=shared");
  const std::vector<float> in = test::normal_data(200, 4);
  std::vector<float> local;
  ASSERT_TRUE(ref::terngrad_local_scalers(d, in, local).ok());
  ASSERT_EQ(local.size(), 2u);
  std::vector<float> shared = {local[0] * 1.5f, local[1]};
  CompressContext ctx;
  ctx.shared_scalers = Span<const float>(shared);
  check_matches(d, ctx, ctx, in);
  std::vector<std::uint8_t> p = {9};
  // Wrong count, below the local scaler, non-finite: kInvalidArgument, payload untouched.
  for (const std::vector<float>& bad :
       {std::vector<float>{local[0]}, std::vector<float>{local[0], local[1] * 0.5f},
        std::vector<float>{INFINITY, local[1]}}) {
    CompressContext c;
    c.shared_scalers = Span<const float>(bad);
    EXPECT_EQ(kk_ops(d).compress(d, c, in, p).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p, std::vector<std::uint8_t>{9});
  }
}

TEST(KkTernGrad, BadInputsAndCorruptPayloads) {
  for (const std::string text : {"terngrad", "terngrad:clip=0"})
    for (std::uint64_t n : {1ull, 100ull, 4097ull}) check_bad_inputs(with_n(text, n), {});
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  check_corruptions(test::desc_or_die("terngrad:n=77"), ctx, test::normal_data(77, 1));
  check_corruptions(test::desc_or_die("terngrad:n=40,shapes=20/20,clip=0"), ctx,
                    test::normal_data(40, 2));
  // A zero segment has scaler 0: any non-zero code in it is corrupt.
  check_corruptions(test::desc_or_die("terngrad:n=48,shapes=16/32"), ctx, [] {
    std::vector<float> v = test::normal_data(48, 3);
    for (int i = 0; i < 16; ++i) v[i] = 0.0f;
    return v;
  }());
}

}  // namespace
}  // namespace gradcomp
