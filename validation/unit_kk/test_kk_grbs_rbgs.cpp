// grbs and rbgs on Kokkos against the reference, plus structural properties of the selected
// blocks checked on the payload directly.
#include "kk_compare.hpp"

namespace gradcomp {
namespace {

using namespace kktest;

const CompressContext kCtxs[] = {{}, {3, 2, 1, {}, nullptr}, {17, 5, 3, {}, nullptr}};

TEST(KkGrbs, MatchesReference) {
  for (const std::string text : {"grbs", "grbs:rho0=0.25", "grbs:rho0=0.5,round=half_up,seed=3",
                                 "grbs:rho0=1", "grbs:nonfinite=propagate,rho0=0.3"}) {
    for (std::uint64_t n : test::edge_sizes())
      for (const auto& ctx : kCtxs) check_matches(text, n, ctx);
  }
  for (const auto& ctx : kCtxs) {
    check_matches("grbs:shapes=4x8/64,rho0=0.5,rho1=0.5", 96, ctx);
    check_matches("grbs:shapes=10x100/100,rho_layer=0.5,rho0=0.3", 1100, ctx);
    check_matches("grbs:shapes=6x5x4/7,rho0=0.34,rho1=0.4", 127, ctx);
    check_matches("grbs:shapes=6x5x4/7,rho0=1,rho1=1", 127, ctx);  // always dense
  }
}

TEST(KkGrbs, BlockIsContiguousRowPieces) {
  // Input = its own index: the body must be rows [r0, r0 + k0) of one column block, each row
  // piece consecutive indices, consecutive pieces exactly d1 apart (row-major 12 x 10). k0 = 3
  // rows (4 full row blocks); k1 = 3 columns, so column blocks 0-2 have 3 columns and block 3
  // (column 9 alone) has 1.
  const CompressorDesc d = test::desc_or_die("grbs:n=120,shapes=12x10,rho0=0.25,rho1=0.3");
  std::vector<float> in(120);
  for (int i = 0; i < 120; ++i) in[i] = static_cast<float>(i);
  bool short_block = false;
  for (std::uint32_t step = 0; step < 40; ++step) {
    const CompressContext ctx{step, 0, 0, {}, nullptr};
    std::vector<std::uint8_t> p;
    ASSERT_TRUE(kk_ops(d).compress(d, ctx, in, p).ok());
    const std::uint32_t count = load_u32(p.data() + 24);
    ASSERT_TRUE(count == 9u || count == 3u) << count;
    const std::uint32_t w = count / 3;
    const float first = load_f32(p.data() + kHeaderBytes);
    EXPECT_EQ(static_cast<int>(first) / 10 % 3, 0) << "row block starts at a multiple of 3 rows";
    EXPECT_EQ(static_cast<int>(first) % 10 % 3, 0) << "column block starts at a multiple of 3";
    if (w == 1) {
      short_block = true;
      EXPECT_EQ(static_cast<int>(first) % 10, 9);
    }
    for (std::uint32_t j = 0; j < count; ++j) {
      const float v = load_f32(p.data() + kHeaderBytes + 4 * j);
      EXPECT_EQ(v, first + static_cast<float>((j / w) * 10 + j % w)) << j;
    }
    check_matches(d, ctx, ctx, in);
  }
  EXPECT_TRUE(short_block) << "40 steps never drew the short last column block";
}

TEST(KkGrbs, BadInputsAndCorruptPayloads) {
  for (std::uint64_t n : {1ull, 100ull, 4097ull})
    check_bad_inputs(test::desc_or_die("grbs:rho0=0.25,n=" + std::to_string(n)), {});
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  check_corruptions(test::desc_or_die("grbs:n=77,rho0=0.3"), ctx, test::normal_data(77, 1));
  check_corruptions(test::desc_or_die("grbs:n=48,shapes=4x4/32,rho0=0.5,rho1=0.5"), ctx,
                    test::normal_data(48, 2));
  check_corruptions(test::desc_or_die("grbs:n=40,rho0=1"), ctx, test::normal_data(40, 2));
}

TEST(KkRbgs, MatchesReference) {
  for (const std::string text :
       {"rbgs:density=0.01", "rbgs:density=0.1,align=partition", "rbgs:density=0.5,seed=4",
        "rbgs:density=1", "rbgs:density=0", "rbgs:density=0.3,align=partition,seed=2",
        "rbgs:density=0.2,nonfinite=propagate"}) {
    for (std::uint64_t n : test::edge_sizes())
      for (const auto& ctx : kCtxs) check_matches(text, n, ctx);
  }
  for (const auto& ctx : kCtxs) {
    check_matches("rbgs:shapes=4x8/64,density=0.25", 96, ctx);
    check_matches("rbgs:shapes=3/50/7,density=0.4,align=partition", 60, ctx);
  }
}

TEST(KkRbgs, BlockIsAWrappedWindow) {
  // Input = index: the body is k = floor(0.3 * 50) = 15 consecutive indices modulo 50.
  const CompressorDesc d = test::desc_or_die("rbgs:n=50,density=0.3");
  std::vector<float> in(50);
  for (int i = 0; i < 50; ++i) in[i] = static_cast<float>(i);
  bool wrapped = false;
  for (std::uint32_t step = 0; step < 40; ++step) {
    const CompressContext ctx{step, 0, 0, {}, nullptr};
    std::vector<std::uint8_t> p;
    ASSERT_TRUE(kk_ops(d).compress(d, ctx, in, p).ok());
    ASSERT_EQ(load_u32(p.data() + 24), 15u);
    const int s = static_cast<int>(load_f32(p.data() + kHeaderBytes));
    for (int j = 0; j < 15; ++j)
      EXPECT_EQ(load_f32(p.data() + kHeaderBytes + 4 * j), static_cast<float>((s + j) % 50));
    wrapped |= s > 35;
    std::vector<float> out(50, 1.0f);
    ASSERT_TRUE(kk_ops(d).decompress(d, ctx, p, Span<float>(out)).ok());
    int nonzero = 0;
    for (int i = 0; i < 50; ++i) nonzero += out[i] != 0.0f || i == 0;
    EXPECT_EQ(nonzero, 15 + (((0 - s + 50) % 50) >= 15 ? 1 : 0)) << "unselected entries are 0";
  }
  EXPECT_TRUE(wrapped) << "40 steps never drew a start that wraps";
}

TEST(KkRbgs, BadInputsAndCorruptPayloads) {
  for (std::uint64_t n : {1ull, 100ull, 4097ull}) {
    check_bad_inputs(test::desc_or_die("rbgs:density=0.1,n=" + std::to_string(n)), {});
    check_bad_inputs(test::desc_or_die("rbgs:density=1,n=" + std::to_string(n)), {});
  }
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  check_corruptions(test::desc_or_die("rbgs:n=77,density=0.2"), ctx, test::normal_data(77, 1));
  check_corruptions(test::desc_or_die("rbgs:n=77,density=0.2,align=partition"), ctx,
                    test::normal_data(77, 1));
  check_corruptions(test::desc_or_die("rbgs:n=30,density=1"), ctx, test::normal_data(30, 1));
}

}  // namespace
}  // namespace gradcomp
