// powersgd on Kokkos against the reference (bit-identical on Serial), the warm-start state, and
// mathematical properties: orthonormal P^ columns, exact recovery of a rank-1 matrix.
#include "kk_compare.hpp"

namespace gradcomp {
namespace {

using namespace kktest;

const CompressContext kCtxs[] = {{}, {3, 2, 1, {}, nullptr}, {17, 5, 3, {}, nullptr}};

TEST(KkPowerSgd, MatchesReference) {
  for (const auto& ctx : kCtxs) {
    for (std::uint64_t n : test::edge_sizes()) check_matches("powersgd", n, ctx);
    check_matches("powersgd:shapes=4x8/64", 96, ctx);
    check_matches("powersgd:shapes=10x100/100,rank=2", 1100, ctx);
    check_matches("powersgd:shapes=64x64/64,rank=4,warm_start=0,seed=3", 4160, ctx);
    check_matches("powersgd:shapes=33x70x3,rank=11", 6930, ctx);  // r > the 8-wide row block
    check_matches("powersgd:shapes=5x2x3/9,rank=7,eps=0", 39, ctx);
    check_matches("powersgd:shapes=300x2000,rank=3", 600000, ctx);
  }
}

TEST(KkPowerSgd, WarmStartStateMatchesReference) {
  const CompressorDesc d = test::desc_or_die("powersgd:n=1190,shapes=20x30/10x50/90,rank=3");
  PowerSgdState sk, sr;
  for (std::uint32_t step = 0; step < 4; ++step) {
    CompressContext ck{step, 1, 0, {}, &sk}, cr{step, 1, 0, {}, &sr};
    check_matches(d, ck, cr, test::normal_data(1190, 10 + step));
    ASSERT_EQ(sk.q.size(), sr.q.size());
    for (std::size_t s = 0; s < sk.q.size(); ++s)
      EXPECT_TRUE(same_bits(sk.q[s], sr.q[s])) << "warm-start Q of segment " << s;
  }
  // A state of the wrong shape is rejected and left as it was.
  PowerSgdState bad;
  bad.q = {std::vector<float>(5, 1.0f), {}, {}};
  const PowerSgdState before = bad;
  std::vector<std::uint8_t> p;
  CompressContext cb{0, 1, 0, {}, &bad};
  EXPECT_EQ(kk_ops(d).compress(d, cb, test::normal_data(1190, 1), p).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.q, before.q);
}

TEST(KkPowerSgd, OrthonormalColumnsAndRankOneRecovery) {
  // M = a b^T is rank 1: one power step recovers it (P^ = +-a/|a|, Q = M^T P^).
  const std::uint64_t rows = 40, cols = 25;
  std::vector<float> a = test::normal_data(rows, 1), b = test::normal_data(cols, 2);
  std::vector<float> m(rows * cols);
  for (std::uint64_t i = 0; i < rows; ++i)
    for (std::uint64_t j = 0; j < cols; ++j) m[i * cols + j] = a[i] * b[j];
  const CompressorDesc d1 = test::desc_or_die("powersgd:n=1000,shapes=40x25,rank=1");
  std::vector<float> out(1000);
  std::vector<std::uint8_t> p;
  ASSERT_TRUE(kk_ops(d1).compress(d1, {}, m, p).ok());
  ASSERT_TRUE(kk_ops(d1).decompress(d1, {}, p, Span<float>(out)).ok());
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < m.size(); ++i) {
    err += (out[i] - m[i]) * (out[i] - m[i]);
    norm += m[i] * m[i];
  }
  EXPECT_LT(std::sqrt(err / norm), 1e-5) << "rank-1 matrix not recovered";
  // Rank 4 on a generic matrix: the 4 columns of P^ (first 40*4 body floats) are orthonormal.
  const CompressorDesc d4 = test::desc_or_die("powersgd:n=1000,shapes=40x25,rank=4");
  ASSERT_TRUE(kk_ops(d4).compress(d4, {}, test::normal_data(1000, 5), p).ok());
  auto P = [&](std::uint64_t i, std::uint64_t c) {
    return static_cast<double>(load_f32(p.data() + kHeaderBytes + 4 * (i * 4 + c)));
  };
  for (std::uint64_t c = 0; c < 4; ++c)
    for (std::uint64_t e = 0; e < 4; ++e) {
      double dot = 0;
      for (std::uint64_t i = 0; i < rows; ++i) dot += P(i, c) * P(i, e);
      EXPECT_NEAR(dot, c == e ? 1.0 : 0.0, 1e-5) << c << "," << e;
    }
}

TEST(KkPowerSgd, BadInputsAndCorruptPayloads) {
  check_bad_inputs(test::desc_or_die("powersgd:n=100,shapes=10x10"), {});
  check_bad_inputs(test::desc_or_die("powersgd:n=4097"), {});
  const CompressContext ctx{2, 1, 0, {}, nullptr};
  check_corruptions(test::desc_or_die("powersgd:n=44,shapes=4x5/24,rank=2"), ctx,
                    test::normal_data(44, 1));
  // Finite input whose product overflows f32: kNonFinite like the reference.
  const CompressorDesc d = test::desc_or_die("powersgd:n=100,shapes=10x10,rank=1");
  std::vector<float> huge(100, 3.0e38f);
  std::vector<std::uint8_t> pk, pr;
  const Status sk = kk_ops(d).compress(d, {}, huge, pk);
  EXPECT_EQ(sk.code(), ref_ops(d).compress(d, {}, huge, pr).code());
  EXPECT_EQ(sk.code(), StatusCode::kNonFinite);
}

}  // namespace
}  // namespace gradcomp
