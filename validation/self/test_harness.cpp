// Self-tests of gradcomp-validate's harness (style.md B3 round trip, B4 comparator verdicts):
// the driver is only as good as its option parser, fills and comparators.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>

#include "validate.hpp"

namespace gradcomp::validation {
namespace {

Settings parse_all(const std::vector<std::string>& args) {
  Settings s;
  for (const auto& a : args) {
    const Status st = parse_option(a, s);
    EXPECT_TRUE(st.ok()) << a << ": " << st.to_string();
  }
  return s;
}

TEST(ValidateOptions, DefaultsPrintNothing) { EXPECT_TRUE(Settings().to_args().empty()); }

TEST(ValidateOptions, PrintParseRoundTrip) {
  const std::vector<std::vector<std::string>> sets = {
      {"--impl=kk:serial"},
      {"--impl=kk:serial,ref:any", "--mode=C,B", "--fill=exact,real,edge"},
      {"--mode=S", "--fill=real", "--trials=64"},
      {"--step=0,3", "--rank=1,2", "--tensor-id=5"},
      {"--sizes=0,1,31,32,33,1023,4097,1048579", "--if-unimplemented=skip"},
  };
  for (const auto& args : sets) {
    const Settings s = parse_all(args);
    const Settings back = parse_all(s.to_args());
    EXPECT_EQ(back, s) << args[0];
    EXPECT_EQ(s.to_args(), args);
  }
}

TEST(ValidateOptions, BadOptionsNameTheOption) {
  Settings s;
  const char* bad[] = {"--mode=X",   "--fill=gauss", "--step=-1",        "--frobnicate=1",
                       "--trials=1", "--impl=",      "--rank=4294967296"};
  for (const char* a : bad) {
    const Status st = parse_option(a, s);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << a;
  }
  EXPECT_NE(parse_option("--mode=X", s).message().find("--mode"), std::string::npos);
  EXPECT_EQ(s, Settings());  // failed options leave the state alone
}

TEST(ValidateOptions, ImplAnyIsTheDefault) {
  Settings s = parse_all({"--impl=kk:serial"});
  ASSERT_TRUE(parse_option("--impl=any", s).ok());
  EXPECT_TRUE(s.impls.empty());
}

TEST(ValidateOptions, CartesianProductAndSizes) {
  const Settings s =
      parse_all({"--impl=ref:any", "--fill=exact,real", "--step=0,1", "--sizes=1,33"});
  std::vector<Case> cases;
  ASSERT_TRUE(expand_case("sign", s, cases).ok());
  ASSERT_EQ(cases.size(), 2u * 2u * 2u);
  EXPECT_EQ(cases[0].desc.n, 1u);
  EXPECT_EQ(cases.back().desc.n, 33u);
  EXPECT_TRUE(cases[0].impl_named);
  // An explicit n wins over --sizes.
  cases.clear();
  ASSERT_TRUE(expand_case("sign:n=7", s, cases).ok());
  ASSERT_EQ(cases.size(), 4u);
  EXPECT_EQ(cases[0].desc.n, 7u);
  EXPECT_FALSE(expand_case("nosuch:n=3", s, cases).ok());
}

TEST(ValidateOptions, ReproIsACommandLine) {
  const Settings s = parse_all({"--impl=ref:any", "--mode=B", "--fill=edge", "--rank=2"});
  std::vector<Case> cases;
  ASSERT_TRUE(expand_case("topk:density=0.01,n=4097,seed=7", s, cases).ok());
  ASSERT_EQ(cases.size(), 1u);
  const std::string r = cases[0].repro("ref:any");
  EXPECT_NE(r.find("--impl=ref:any --mode=B --fill=edge --rank=2"), std::string::npos) << r;
  // The repro's case string parses back to the same descriptor.
  auto d = parse_compressor(r.substr(0, r.find(' ')));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value(), cases[0].desc);
}

TEST(ValidateOptions, BatchFilesCommentsResetAndNesting) {
  const std::string dir = ::testing::TempDir();
  {
    std::ofstream f(dir + "/shapes_self");
    f << "# sizes only\n--sizes=1,32\n";
  }
  {
    std::ofstream f(dir + "/test_self");
    f << "--reset\n--fill=real   # comment\n--batch=shapes_self\nsign\n--reset\nsign:n=5\n";
  }
  ParsedArgs p;
  const Status st = expand_args({"--impl=ref:any", "--batch=" + dir + "/test_self"}, p);
  ASSERT_TRUE(st.ok()) << st.to_string();
  ASSERT_EQ(p.cases.size(), 3u);
  EXPECT_EQ(p.cases[0].fill, Fill::kReal);
  EXPECT_EQ(p.cases[1].desc.n, 32u);
  EXPECT_EQ(p.cases[2].fill, Fill::kExact);  // --reset restored the fill ...
  EXPECT_EQ(p.cases[2].impl, "ref:any");     // ... but not the global --impl
  EXPECT_FALSE(expand_args({"--batch=" + dir + "/does_not_exist"}, p).ok());
}

// style.md B3: parse(print(x)) == x for every registered compressor, through the driver's own
// case expansion and repro line.
TEST(ValidateOptions, EveryCompressorRoundTripsThroughTheRepro) {
  const Settings s = parse_all({"--impl=ref:any", "--sizes=0,33"});
  for (const auto& info : compressor_catalog()) {
    std::vector<Case> cases;
    const Status st = expand_case(info.name, s, cases);
    ASSERT_TRUE(st.ok()) << info.name << ": " << st.to_string();
    ASSERT_EQ(cases.size(), 2u) << info.name;
    for (const auto& c : cases) {
      const std::string r = c.repro("ref:any");
      auto back = parse_compressor(r.substr(0, r.find(' ')));
      ASSERT_TRUE(back.ok()) << r;
      EXPECT_EQ(back.value(), c.desc) << r;
    }
  }
}

// Every committed batch file expands without error (CTest runs them), each test file starts
// with --reset, and every compressor has a smoke and a CI file.
TEST(ValidateOptions, CommittedBatchFilesParse) {
  const std::string dir = GRADCOMP_CASES_DIR;
  for (const auto& info : compressor_catalog()) {
    for (const char* tier : {"smoke", "ci"}) {
      const std::string path = dir + "/test_" + info.name + "_" + tier;
      std::ifstream f(path);
      ASSERT_TRUE(f.good()) << path;
      std::string first;
      while (std::getline(f, first) && (first.empty() || first[0] == '#')) {
      }
      EXPECT_EQ(first, "--reset") << path;
      ParsedArgs p;
      const Status st = expand_args({"--impl=ref:any", "--batch=" + path}, p);
      ASSERT_TRUE(st.ok()) << path << ": " << st.to_string();
      EXPECT_GT(p.cases.size(), 0u) << path;
      for (const auto& c : p.cases) EXPECT_EQ(c.desc.kind, info.kind) << path;
    }
  }
  for (const char* all : {"test_all_smoke", "test_all_ci"}) {
    ParsedArgs p;
    ASSERT_TRUE(expand_args({"--batch=" + dir + "/" + all}, p).ok()) << all;
    EXPECT_GT(p.cases.size(), 100u);
  }
}

TEST(ValidateFill, PureFunctionOfSeedKindRankIndex) {
  for (Fill f : {Fill::kExact, Fill::kReal, Fill::kEdge}) {
    std::vector<float> a(100);
    std::vector<float> b(1000);
    fill(f, 7, DataKind::kSrc, 1, Span<float>(a));
    fill(f, 7, DataKind::kSrc, 1, Span<float>(b));
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]);  // independent of n
    std::vector<float> c(100);
    fill(f, 7, DataKind::kSrc, 2, Span<float>(c));
    EXPECT_NE(a, c);  // the rank matters
    fill(f, 7, DataKind::kAcc, 1, Span<float>(c));
    EXPECT_NE(a, c);  // the data kind matters
  }
}

TEST(ValidateFill, ExactFillIsDyadicAndMostlyNonzero) {
  std::vector<float> v(4096);
  fill(Fill::kExact, 3, DataKind::kSrc, 0, Span<float>(v));
  std::size_t zeros = 0;
  for (float x : v) {
    EXPECT_EQ(x * 4.0f, std::round(x * 4.0f));
    EXPECT_LE(std::abs(x), 1.75f);
    zeros += x == 0.0f;
  }
  EXPECT_LT(zeros, v.size() / 8);
}

TEST(ValidateFill, EdgeFillHasTheCorners) {
  std::vector<float> v(4096);
  fill(Fill::kEdge, 3, DataKind::kSrc, 0, Span<float>(v));
  bool neg_zero = false;
  bool denormal = false;
  bool tie = false;
  for (float x : v) {
    neg_zero = neg_zero || (x == 0.0f && std::signbit(x));
    denormal = denormal || std::fpclassify(x) == FP_SUBNORMAL;
    tie = tie || x == -1.5f;
  }
  EXPECT_TRUE(neg_zero);
  EXPECT_TRUE(denormal);
  EXPECT_TRUE(tie);
}

TEST(ValidateCompare, BytesExactWithLength) {
  const std::vector<std::uint8_t> a = {1, 2, 3, 4};
  EXPECT_TRUE(compare_bytes(a, a).ok());
  std::vector<std::uint8_t> b = a;
  b[2] = 9;
  const CompareResult r = compare_bytes(a, b);
  EXPECT_EQ(r.nerr, 1u);
  ASSERT_EQ(r.first.size(), 1u);
  EXPECT_EQ(r.first[0].index, 2u);
  b = {1, 2, 3};
  EXPECT_EQ(compare_bytes(a, b).nerr, 1u);  // a missing byte is a mismatch
  b = {1, 2, 3, 4, 0, 0};
  EXPECT_EQ(compare_bytes(a, b).nerr, 2u);  // so is padding the payload
}

TEST(ValidateCompare, ExactFloatsAreBitwise) {
  const std::vector<float> e = {0.0f, 1.0f, -2.5f};
  std::vector<float> g = {-0.0f, 1.0f, -2.5f};
  EXPECT_EQ(compare_floats(e, g, kExactFloats, "x").nerr, 1u);  // -0.0 != +0.0
  g[0] = 0.0f;
  EXPECT_TRUE(compare_floats(e, g, kExactFloats, "x").ok());
  g[1] = std::nextafter(1.0f, 2.0f);
  EXPECT_EQ(compare_floats(e, g, kExactFloats, "x").nerr, 1u);   // one ulp is a mismatch
  EXPECT_TRUE(compare_floats(e, g, kElementwiseF32, "x").ok());  // but within 4e-6
}

TEST(ValidateCompare, RelativeWithAbsoluteFloorAndNonFinite) {
  const std::vector<float> e = {100.0f, 1e-9f, 1.0f};
  std::vector<float> g = {100.0f * (1 + 1e-5f), 1.1e-9f, 1.0f};
  // 1e-5 relative passes reduction_f32 (2e-5) and fails elementwise_f32 (4e-6); the tiny
  // element differs by 1e-10, far below either floor (1e-6 or 1e-5 times max|exp| = 100).
  EXPECT_TRUE(compare_floats(e, g, kReductionF32, "x").ok());
  const CompareResult r = compare_floats(e, g, kElementwiseF32, "x");
  EXPECT_EQ(r.nerr, 1u);
  EXPECT_EQ(r.first[0].index, 0u);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(
      compare_floats(std::vector<float>{nan, inf}, std::vector<float>{nan, inf}, kReductionF32, "x")
          .ok());
  EXPECT_EQ(compare_floats(std::vector<float>{nan, inf}, std::vector<float>{1.0f, -inf},
                           kReductionF32, "x")
                .nerr,
            2u);
}

TEST(ValidateCompare, FirstTenMismatchesOnly) {
  std::vector<float> e(50, 1.0f);
  std::vector<float> g(50, 2.0f);
  const CompareResult r = compare_floats(e, g, kExactFloats, "x");
  EXPECT_EQ(r.nerr, 50u);
  EXPECT_EQ(r.first.size(), kMaxMismatchesShown);
  EXPECT_EQ(r.max_diff, 1.0);
}

TEST(ValidateCompare, SupportMustMatch) {
  const std::vector<float> e = {0, 1, 0, 2};
  EXPECT_TRUE(compare_support(e, std::vector<float>{0, 1.5f, 0, 3}).ok());
  EXPECT_EQ(compare_support(e, std::vector<float>{1, 1, 0, 0}).nerr, 2u);
}

TEST(ValidateCompare, ToleranceRowsPerFill) {
  EXPECT_EQ(&decode_tolerance(Fill::kExact, false), &kExactFloats);
  EXPECT_EQ(&decode_tolerance(Fill::kReal, true), &kElementwiseF32);
  EXPECT_EQ(&decode_tolerance(Fill::kReal, false), &kReductionF32);
  EXPECT_EQ(&accumulate_tolerance(Fill::kExact), &kExactFloats);
}

CompressorDesc desc(const std::string& text) {
  auto r = parse_compressor(text);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.value();
}

TEST(ValidateMistrust, SparsifiersAreJudgedAgainstK) {
  std::vector<float> in(1000, 1.0f);
  std::vector<float> out(1000, 0.0f);
  const auto topk = desc("topk:n=1000,k=10");
  for (int i = 0; i < 10; ++i) out[std::size_t(i)] = 1.0f;
  EXPECT_EQ(mistrust_reason(topk, in, out), "");  // 99% zeros is what top-k should give
  for (int i = 3; i < 10; ++i) out[std::size_t(i)] = 0.0f;
  EXPECT_NE(mistrust_reason(topk, in, out), "");  // 3 of 10 kept: mistrusted
}

TEST(ValidateMistrust, DenseCompressorsAreJudgedAgainstTheInput) {
  std::vector<float> in(100, 0.0f);
  std::vector<float> out(100, 0.0f);
  const auto id = desc("identity:n=100");
  EXPECT_EQ(mistrust_reason(id, in, out), "");  // all-zero input: nothing to keep
  for (std::size_t i = 0; i < 100; ++i) in[i] = 1.0f;
  EXPECT_NE(mistrust_reason(id, in, out), "");
  for (std::size_t i = 0; i < 75; ++i) out[i] = 1.0f;
  EXPECT_EQ(mistrust_reason(id, in, out), "");  // 25% zeros is within the 30% trust
}

TEST(ValidateMistrust, StochasticOnlyWhenAllZero) {
  std::vector<float> in(100, 1.0f);
  std::vector<float> out(100, 0.0f);
  const auto q = desc("qsgd:n=100");
  EXPECT_NE(mistrust_reason(q, in, out), "");
  out[5] = 1.0f;
  EXPECT_EQ(mistrust_reason(q, in, out), "");
}

TEST(ValidateStats, BonferroniQuantiles) {
  EXPECT_NEAR(bonferroni_z(0.05, 1), 1.959964, 1e-4);
  EXPECT_NEAR(bonferroni_z(1e-6, 1), 4.891638, 1e-4);
  EXPECT_GT(bonferroni_z(1e-6, 1e6), 7.0);
}

// Two-point draws (a = 0, b = 1, P(b) = x): unbiased passes, a shifted law fails.
std::vector<double> two_point(const std::vector<double>& p, std::uint32_t trials, double shift) {
  std::vector<double> s(p.size() * trials);
  std::uint64_t h = 12345;
  for (std::uint32_t t = 0; t < trials; ++t)
    for (std::size_t j = 0; j < p.size(); ++j) {
      h = h * 6364136223846793005ull + 1442695040888963407ull;
      const double u = double(h >> 11) / 9007199254740992.0;
      s[t * p.size() + j] = u < p[j] + shift ? 1.0 : 0.0;
    }
  return s;
}

TEST(ValidateStats, UnbiasedPassesBiasedFails) {
  std::vector<double> p(200);
  for (std::size_t j = 0; j < p.size(); ++j) p[j] = 0.2 + 0.6 * double(j) / 200.0;
  const std::uint32_t T = 400;
  const auto good = two_point(p, T, 0.0);
  const StatResult ok = check_unbiased(good, T, p);
  EXPECT_TRUE(ok.ok) << ok.reason;
  EXPECT_GT(ok.resolved, 190u);
  const auto bad = two_point(p, T, 0.1);
  EXPECT_FALSE(check_unbiased(bad, T, p).ok);
  // A deterministic element equal to its target is fine; a wrong constant is not.
  std::vector<double> c(2 * 3, 0.5);
  EXPECT_TRUE(check_unbiased(c, 3, std::vector<double>{0.5, 0.5}).ok);
  EXPECT_FALSE(check_unbiased(c, 3, std::vector<double>{0.5, 0.25}).ok);
}

TEST(ValidateStats, UnsupportedCompressorsAreNamed) {
  EXPECT_EQ(statistical_unsupported(desc("qsgd:n=10")), "");
  EXPECT_EQ(statistical_unsupported(desc("randk:n=10,rescale=unbiased")), "");
  EXPECT_NE(statistical_unsupported(desc("terngrad:n=10")), "");  // clip=2.5 by default
  EXPECT_EQ(statistical_unsupported(desc("terngrad:n=10,clip=0")), "");
  EXPECT_NE(statistical_unsupported(desc("topk:n=10")), "");
}

}  // namespace
}  // namespace gradcomp::validation
