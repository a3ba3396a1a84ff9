// Properties every compressor must have, checked over the whole catalog: case strings round
// trip, payload sizes keep their contract at every edge size, decoding is deterministic and
// rejects truncation, the NaN/Inf policy, all-zero inputs, and state kept on error.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "test_util.hpp"

namespace gradcomp {
namespace {

using test::desc_or_die;

// Non-default option sets: each must survive parse(print(x)) == x.
const char* const kVariants[] = {
    "identity:n=5,seed=3",
    "fp16:n=0,nonfinite=propagate",
    "bf16:n=4294967295",
    "sign:n=33",
    "blocksign:n=100,block=7,scale=l2",
    "blocksign:n=91,scale=none,shapes=10x3/61",
    "qsgd:n=1000,levels=7,bucket=0,norm=max",
    "terngrad:n=64,clip=0,scaler=shared,shapes=8x8",
    "topk:n=1048579,density=0.001,seed=7",
    "topk:n=10,k=3",
    "dgc:n=5000,density=0.01,sample_ratio=0.05,selection=exact",
    "randk:n=100,k=0,indices=private,rescale=unbiased",
    "threshold:n=9,tau=0.125",
    "grbs:n=600,rho_layer=0.5,rho0=0.25,rho1=0.5,round=half_up,shapes=20x30",
    "rbgs:n=64,density=0.015625,align=partition",
    "qsgd_topk:n=100,density=0.1,levels=3,norm=max,scaled=1",
    "qsgd_randk:n=100,k=5,levels=2,indices=private",
    "signtopk:n=1000,density=0.25",
    "powersgd:n=78,rank=2,warm_start=0,eps=0,shapes=6x13",
};

TEST(CaseStrings, ParsePrintRoundTripForEveryCompressor) {
  for (const auto& info : compressor_catalog()) {
    const auto d = desc_or_die(info.name + ":n=1000,seed=7");
    EXPECT_EQ(d.kind, info.kind);
    auto again = parse_compressor(d.to_string());
    ASSERT_TRUE(again.ok()) << d.to_string() << ": " << again.status().to_string();
    EXPECT_EQ(again.value(), d) << d.to_string();
    EXPECT_EQ(again->to_string(), d.to_string());
    EXPECT_EQ(d.to_string().rfind(info.name + ":n=1000,seed=7", 0), 0u) << d.to_string();
  }
  for (const char* text : kVariants) {
    const auto d = desc_or_die(text);
    auto again = parse_compressor(d.to_string());
    ASSERT_TRUE(again.ok()) << text << " -> " << d.to_string();
    EXPECT_EQ(again.value(), d) << text << " -> " << d.to_string();
    EXPECT_NE(d, desc_or_die(std::string(compressor_name(d.kind)) + ":n=" + std::to_string(d.n) +
                             ",seed=1234"))
        << text;
  }
}

TEST(CaseStrings, OptionsChangeThePrintedString) {
  // Every option of every compressor is printed: changing it changes the canonical string.
  for (const auto& info : compressor_catalog()) {
    for (const auto& opt : info.options) {
      if (opt.key == "k" || opt.key == "density") continue;  // exclusive pair, tested below
      const auto base = desc_or_die(info.name + ":n=64");
      EXPECT_NE(base.to_string().find("," + opt.key + "=" + opt.default_value), std::string::npos)
          << info.name << " does not print " << opt.key << "=" << opt.default_value << " in "
          << base.to_string();
    }
  }
  EXPECT_EQ(desc_or_die("topk:k=3,n=10").to_string(), "topk:n=10,seed=0,k=3,nonfinite=error");
}

TEST(CaseStrings, RejectsBadOptionsWithClearMessages) {
  struct Bad {
    const char* text;
    const char* message_part;
  };
  const Bad bad[] = {
      {"nosuch:n=3", "unknown compressor"},
      {"topk:n=3,levels=2", "unknown option 'levels'"},
      {"topk:n=3,density=0.1,k=1", "either 'density' or 'k'"},
      {"topk:n=3,density=1.5", "density"},
      {"qsgd:n=3,levels=0", "levels"},
      {"qsgd:n=3,norm=l3", "l2|max"},
      {"blocksign:n=3,shapes=2x2", "shapes hold 4"},
      {"blocksign:n=3,shapes=0x3", "extent 0"},
      {"sign:n=-1", "non-negative"},
      {"sign:n=4294967296", "2^32"},
      {"grbs:n=3,rho0=0", "rho0"},
      {"powersgd:n=3,rank=0", "rank"},
      {"terngrad:n=3,clip=-1", "clip"},
      {"dgc:n=3,sample_ratio=0", "sample_ratio"},
      {"rbgs:n=3,k=2", "unknown option 'k'"},
      {"sign:n=3,nonfinite=ignore", "error|propagate"},
  };
  for (const Bad& b : bad) {
    auto r = parse_compressor(b.text);
    ASSERT_FALSE(r.ok()) << b.text << " was accepted";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << b.text;
    EXPECT_NE(r.status().message().find(b.message_part), std::string::npos)
        << b.text << " -> " << r.status().message();
  }
  // n defaults to the layout's size.
  EXPECT_EQ(desc_or_die("blocksign:shapes=2x3/4").n, 10u);
}

TEST(SparsifierK, CeilWithGuardAndClamp) {
  auto d = desc_or_die("topk:density=0.001");
  EXPECT_EQ(sparsifier_k(d, 1000), 1u);  // 0.001 * 1000 is 1.0000000000000002 in double
  EXPECT_EQ(sparsifier_k(d, 1001), 2u);
  EXPECT_EQ(sparsifier_k(d, 1), 1u);
  EXPECT_EQ(sparsifier_k(d, 0), 0u);
  EXPECT_EQ(sparsifier_k(desc_or_die("topk:density=0"), 100), 0u);
  EXPECT_EQ(sparsifier_k(desc_or_die("topk:density=1"), 100), 100u);
  EXPECT_EQ(sparsifier_k(desc_or_die("topk:k=500"), 100), 100u);
  EXPECT_EQ(sparsifier_k(desc_or_die("topk:density=0.1"), 30), 3u);  // 0.1*30 = 3.0000000000000004
}

// Every compressor, default options, every edge size.
class EveryCompressor : public ::testing::TestWithParam<CompressorKind> {};

TEST_P(EveryCompressor, PayloadSizeContractAndDeterminism) {
  const std::string name = compressor_name(GetParam());
  for (std::uint64_t n : test::edge_sizes()) {
    const auto d = desc_or_die(name + ":seed=11,n=" + std::to_string(n));
    const auto v = test::normal_data(n, 17);
    ref::CompressContext ctx;
    ctx.step = 5;
    ctx.tensor_id = 2;
    ctx.rank = 1;
    std::vector<std::uint8_t> p1, p2;
    ASSERT_TRUE(ref::compress(d, ctx, v, p1).ok()) << d.to_string();
    ASSERT_TRUE(ref::compress(d, ctx, v, p2).ok()) << d.to_string();
    EXPECT_EQ(p1, p2) << d.to_string() << ": same inputs and keys must give the same bytes";
    const std::uint64_t bound = ref::payload_bytes(d);
    if (compressor_is_variable_size(d.kind)) {
      EXPECT_LE(p1.size(), bound) << d.to_string();
    } else {
      EXPECT_EQ(p1.size(), bound) << d.to_string();
    }
    std::vector<float> out(n, std::nanf(""));
    ASSERT_TRUE(ref::decompress(d, ctx, p1, Span<float>(out)).ok()) << d.to_string();
    for (std::uint64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(out[i])) << d.to_string();
    if (n <= 4097) test::expect_truncations_rejected(d, p1, ctx);
    // A payload made for another step or tensor is refused (desynchronised ranks).
    ref::CompressContext other = ctx;
    other.step = 6;
    EXPECT_EQ(ref::decompress(d, other, p1, Span<float>(out)).code(), StatusCode::kCorruptPayload);
  }
}

TEST_P(EveryCompressor, AllZeroInputGivesZeros) {
  const std::string name = compressor_name(GetParam());
  for (std::uint64_t n : {1ull, 33ull, 4097ull}) {
    const auto d = desc_or_die(name + ":n=" + std::to_string(n));
    const auto out = test::roundtrip(d, std::vector<float>(n, 0.0f));
    for (std::uint64_t i = 0; i < n; ++i) {
      if (d.kind == CompressorKind::kSign) {
        ASSERT_EQ(out[i], 1.0f);  // unscaled sign of 0 is +1 by definition
      } else {
        ASSERT_EQ(out[i], 0.0f) << d.to_string() << " element " << i;
      }
    }
  }
}

TEST_P(EveryCompressor, NonFiniteInputIsRejectedByDefault) {
  const std::string name = compressor_name(GetParam());
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    auto v = test::normal_data(40, 3);
    v[17] = bad;
    const auto d = desc_or_die(name + ":n=40");
    std::vector<std::uint8_t> p = {42};
    Status s = ref::compress(d, {}, v, p);
    EXPECT_EQ(s.code(), StatusCode::kNonFinite) << d.to_string();
    EXPECT_NE(s.message().find("input[17]"), std::string::npos) << s.message();
    EXPECT_EQ(p, std::vector<std::uint8_t>{42}) << "payload must be untouched on error";
    // With nonfinite=propagate the call goes through (what comes out is the caller's problem).
    const auto dp = desc_or_die(name + ":n=40,nonfinite=propagate");
    ASSERT_TRUE(ref::compress(dp, {}, v, p).ok()) << dp.to_string();
    std::vector<float> out(40);
    EXPECT_TRUE(ref::decompress(dp, {}, p, Span<float>(out)).ok())
        << dp.to_string() << ": a payload made under nonfinite=propagate must decode";
  }
}

TEST_P(EveryCompressor, SizeOneAndEmptyWork) {
  const std::string name = compressor_name(GetParam());
  const auto d0 = desc_or_die(name + ":n=0");
  EXPECT_TRUE(test::roundtrip(d0, {}).empty());
  const auto d1 = desc_or_die(name + ":n=1");
  const auto out = test::roundtrip(d1, {-0.75f});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::isfinite(out[0]));
}

std::vector<CompressorKind> all_kinds() {
  std::vector<CompressorKind> kinds;
  for (const auto& info : compressor_catalog()) kinds.push_back(info.kind);
  return kinds;
}

INSTANTIATE_TEST_SUITE_P(Catalog, EveryCompressor, ::testing::ValuesIn(all_kinds()),
                         [](const ::testing::TestParamInfo<CompressorKind>& param) {
                           return std::string(compressor_name(param.param));
                         });

}  // namespace
}  // namespace gradcomp
