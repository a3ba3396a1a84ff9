// Every compressed collective against its oracle on host arrays (reference/ref_collectives.cpp).
// Rank r's input is a pure function of (r, i) with dyadic values, so every rank builds all P
// inputs, runs the oracle alone and compares its own output: deterministic mode bitwise,
// out-of-place and in-place; fast mode within a tolerance. Then the error contract: sizes that
// differ across ranks, NaN on one rank, a corrupt payload from one rank -> an error on every
// rank, output untouched, no hang. Every comparison runs with the reference compute (ref:any)
// and with the Kokkos kernels (kk:serial, where built): deterministic mode is bitwise for both,
// because kk:serial produces the reference's payload bytes and decodes on every fill
// (docs/tolerances.md). Two-phase phase 1 travels as per-owner slices (two_phase_slice): their
// decode, size and the phase-1 volume are checked here too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/coll/compressed.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/ref/collectives.hpp"
#include "gradcomp/ref/compress.hpp"
#include "mpi_test_env.hpp"

namespace gradcomp::test {
namespace {

using coll::Algorithm;
using coll::CollectiveOptions;
using coll::ReductionMode;

constexpr std::uint32_t kStep = 3;

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

// Multiples of 1/64 in [-8, 8): sums of a few of them are exact in f32 and f64.
float fill(std::uint64_t seed, std::uint32_t rank, std::uint64_t i) {
  const std::uint64_t h = mix(seed * 1000003ull + rank * 7919ull + i * 2654435761ull + 17);
  return static_cast<float>(static_cast<int>(h % 1024) - 512) / 64.0f;
}

std::vector<std::vector<float>> all_inputs(std::uint64_t seed, std::uint32_t p, std::uint64_t n) {
  std::vector<std::vector<float>> in(p, std::vector<float>(n));
  for (std::uint32_t r = 0; r < p; ++r)
    for (std::uint64_t i = 0; i < n; ++i) in[r][i] = fill(seed, r, i);
  return in;
}

const CompressorImpl& ref_impl() {
  static const CompressorImpl* impl = [] {
    for (const CompressorImpl& i : compressor_impls())
      if (i.is_reference) return &i;
    return static_cast<const CompressorImpl*>(nullptr);
  }();
  return *impl;
}

std::string with_n(const std::string& spec, std::uint64_t n) {
  return spec + (spec.find(':') == std::string::npos ? ":" : ",") + "n=" + std::to_string(n);
}

CompressorDesc make_desc(const std::string& spec, std::uint64_t n) {
  Result<CompressorDesc> d = parse_compressor(with_n(spec, n));
  EXPECT_TRUE(d.ok()) << spec << ": " << d.status().to_string();
  return d.ok() ? *d : CompressorDesc{};
}

CompressContext context(std::uint32_t rank) {
  CompressContext ctx;
  ctx.step = kStep;
  ctx.tensor_id = 0;
  ctx.rank = rank;
  return ctx;
}

// Count of elements whose bits differ; prints the first few.
std::uint64_t bit_mismatches(const std::vector<float>& got, const std::vector<float>& want,
                             const std::string& what) {
  std::uint64_t bad = 0;
  for (std::size_t j = 0; j < want.size(); ++j) {
    if (std::memcmp(&got[j], &want[j], 4) != 0) {
      if (bad < 5) ADD_FAILURE() << what << ": [" << j << "] got " << got[j] << " want " << want[j];
      ++bad;
    }
  }
  return bad;
}

struct Case {
  Algorithm algorithm;
  const char* spec;
  bool large;  // also run at n = 2^20 + 3
};

const Case kCases[] = {
    {Algorithm::kDense, "identity", true},
    {Algorithm::kAllgather, "topk:density=0.01", true},
    {Algorithm::kAllgather, "dgc:density=0.01", false},
    {Algorithm::kAllgather, "randk:density=0.01,indices=private", false},
    {Algorithm::kAllgather, "threshold:tau=6", false},
    {Algorithm::kAllgather, "qsgd:levels=4", false},
    {Algorithm::kSharedSupport, "randk:density=0.01", true},
    {Algorithm::kSharedSupport, "grbs", false},
    {Algorithm::kSharedSupport, "rbgs:density=0.01", false},
    {Algorithm::kMajority, "sign", true},
    {Algorithm::kMajority, "blocksign:block=64", false},
    {Algorithm::kTwoPhase, "blocksign:block=64", true},
    {Algorithm::kTwoPhase, "blocksign", false},
    {Algorithm::kTwoPhase, "qsgd", false},
    {Algorithm::kTwoPhase, "terngrad", false},
    {Algorithm::kTwoPhase, "sign", false},
    {Algorithm::kTwoPhase, "blocksign:block=50,scale=l2", false},
    {Algorithm::kTwoPhase, "qsgd:levels=5,bucket=100", true},
    {Algorithm::kTwoPhase, "terngrad:clip=0", false},
};

// The collective under test for this case (two-phase: with this rank's server memory chunk).
Status run_case(const Case& c, const CompressorDesc& desc, std::uint32_t rank, Span<const float> in,
                Span<float> out, std::vector<float>& server_chunk, double rescale,
                ReductionMode mode, const CompressorImpl& impl = ref_impl()) {
  CollectiveOptions opt;
  opt.mode = mode;
  coll::CollStats stats;
  if (c.algorithm == Algorithm::kTwoPhase)
    return coll::two_phase_allreduce(world(), impl, desc, desc, context(rank), in, server_chunk,
                                     rescale, out, Span<float>(), opt, &stats);
  return coll::compressed_allreduce(world(), c.algorithm, impl, desc, context(rank), in, out, opt,
                                    &stats);
}

const char* const kImpls[] = {"ref:any", "kk:serial"};

Result<std::vector<float>> run_oracle(const Case& c, const CompressorDesc& desc,
                                      const std::vector<std::vector<float>>& in,
                                      std::vector<float>& server_full, double rescale) {
  switch (c.algorithm) {
    case Algorithm::kDense: return ref::coll_dense_mean(in);
    case Algorithm::kMajority: return ref::coll_majority(desc, kStep, 0, in, false);
    case Algorithm::kTwoPhase:
      return ref::coll_two_phase(desc, desc, kStep, in, server_full, rescale);
    default: return ref::coll_compressed_mean(desc, kStep, 0, in);
  }
}

using VsOracleParam = std::tuple<int, std::uint64_t, int>;
class CollectiveVsOracle : public ::testing::TestWithParam<VsOracleParam> {};

TEST_P(CollectiveVsOracle, DeterministicBitwiseInAndOutOfPlaceFastWithinTolerance) {
  const Case& c = kCases[std::get<0>(GetParam())];
  const std::uint64_t n = std::get<1>(GetParam());
  const char* impl_name = kImpls[std::get<2>(GetParam())];
  if (n > 5000 && !c.large) GTEST_SKIP() << "large size only for one case per algorithm";
  Communicator& comm = world();
  const std::uint32_t p = comm.size(), rank = comm.rank();
  Result<CompressorDesc> parsed = parse_compressor(with_n(c.spec, n));
  if (!parsed.ok())
    GTEST_SKIP() << c.spec << " at n = " << n << ": " << parsed.status().to_string();
  const CompressorDesc desc = *parsed;
  Result<const CompressorImpl*> selected = select_impl(desc, impl_name);
  // The same answer on every rank (same build), so all ranks skip together.
  if (!selected.ok() && selected.status().code() == StatusCode::kUnimplemented)
    GTEST_SKIP() << impl_name << ": " << selected.status().to_string();
  ASSERT_TRUE(selected.ok()) << selected.status().to_string();
  const CompressorImpl& impl = **selected;
  const auto in = all_inputs(n + 11, p, n);
  const std::vector<ChunkRange> chunks = chunk_bounds(n, p);
  const ChunkRange mine = n == 0 ? ChunkRange{} : chunks[rank];
  // Server memory: a dyadic start value so that the rescaled memory takes part.
  std::vector<float> server_full(n);
  for (std::uint64_t j = 0; j < n; ++j) server_full[j] = fill(99, 0, j) / 8.0f;
  const double rescale = 0.5;
  std::vector<float> oracle_server = server_full;
  Result<std::vector<float>> want = run_oracle(c, desc, in, oracle_server, rescale);
  ASSERT_TRUE(want.ok()) << want.status().to_string();
  if (n >= 33 && c.algorithm != Algorithm::kMajority) {
    bool nonzero = false;
    for (float v : *want) nonzero |= v != 0.0f;
    EXPECT_TRUE(nonzero) << "oracle output is all zero: the comparison would prove nothing";
  }
  auto chunk_of = [&](const std::vector<float>& full) {
    return std::vector<float>(full.begin() + mine.begin, full.begin() + mine.end);
  };
  const std::string what = std::string(coll::algorithm_name(c.algorithm)) + " " + c.spec +
                           " n=" + std::to_string(n) + " P=" + std::to_string(p) + " " + impl_name;

  // Deterministic, out of place.
  std::vector<float> out(n, -7.0f), server = chunk_of(server_full);
  Status s =
      run_case(c, desc, rank, in[rank], out, server, rescale, ReductionMode::kDeterministic, impl);
  ASSERT_TRUE(s.ok()) << what << ": " << s.to_string();
  EXPECT_EQ(bit_mismatches(out, *want, what + " det"), 0u);
  if (c.algorithm == Algorithm::kTwoPhase) {
    EXPECT_EQ(bit_mismatches(server, chunk_of(oracle_server), what + " server memory"), 0u);
  }

  // Deterministic, in place.
  std::vector<float> buf = in[rank];
  server = chunk_of(server_full);
  s = run_case(c, desc, rank, buf, buf, server, rescale, ReductionMode::kDeterministic, impl);
  ASSERT_TRUE(s.ok()) << what << " in-place: " << s.to_string();
  EXPECT_EQ(bit_mismatches(buf, *want, what + " det in-place"), 0u);

  // Fast: MPI's reduction order / f32 accumulation.
  std::vector<float> fast(n);
  server = chunk_of(server_full);
  s = run_case(c, desc, rank, in[rank], fast, server, rescale, ReductionMode::kFast, impl);
  ASSERT_TRUE(s.ok()) << what << " fast: " << s.to_string();
  double scale = 1.0;
  for (float v : *want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  // Decoded messages are at most ~ sqrt(bucket) * max|x| (qsgd); f32 sums of P of them.
  const double tol = 4.0 * p * 1.2e-7 * scale * 64.0;
  std::uint64_t off = 0;
  for (std::uint64_t j = 0; j < n; ++j)
    if (!(std::fabs(static_cast<double>(fast[j]) - (*want)[j]) <= tol)) ++off;
  if (c.algorithm == Algorithm::kTwoPhase) {
    // The owner re-compresses a slightly different mean: a sign may flip where the server
    // input is within rounding of 0. Allow a small fraction of such elements.
    EXPECT_LE(off, n / 100 + 1) << what << " fast: " << off << " elements off";
  } else {
    EXPECT_EQ(off, 0u) << what << " fast: " << off << " elements beyond " << tol;
  }
}

std::string case_name(const ::testing::TestParamInfo<VsOracleParam>& info) {
  const Case& c = kCases[std::get<0>(info.param)];
  std::string s = std::string(kImpls[std::get<2>(info.param)]) + "_" +
                  coll::algorithm_name(c.algorithm) + "_" + c.spec;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s + "_n" + std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    All, CollectiveVsOracle,
    ::testing::Combine(::testing::Range(0, static_cast<int>(std::size(kCases))),
                       ::testing::Values<std::uint64_t>(0, 1, 33, 4097, (1u << 20) + 3),
                       ::testing::Range(0, static_cast<int>(std::size(kImpls)))),
    case_name);

// Two consecutive two-phase steps: the server memory carried from step 1 shapes step 2 exactly
// as in the oracle.
TEST(TwoPhase, ServerMemoryCarriesOverSteps) {
  Communicator& comm = world();
  const std::uint32_t p = comm.size(), rank = comm.rank();
  const std::uint64_t n = 1000;
  const CompressorDesc desc = make_desc("blocksign:block=100", n);
  std::vector<float> oracle_server(n, 0.0f);
  const ChunkRange mine = chunk_bounds(n, p)[rank];
  std::vector<float> server(mine.size(), 0.0f), out(n);
  for (std::uint32_t step = 0; step < 2; ++step) {
    const auto in = all_inputs(500 + step, p, n);
    Result<std::vector<float>> want = ref::coll_two_phase(desc, desc, step, in, oracle_server, 1.0);
    ASSERT_TRUE(want.ok());
    CompressContext ctx = context(rank);
    ctx.step = step;
    CollectiveOptions opt;
    std::vector<float> decoded(n);
    ASSERT_TRUE(coll::two_phase_allreduce(comm, ref_impl(), desc, desc, ctx, in[rank], server, 1.0,
                                          out, decoded, opt, nullptr)
                    .ok());
    EXPECT_EQ(bit_mismatches(out, *want, "step " + std::to_string(step)), 0u);
    std::vector<float> want_server(oracle_server.begin() + mine.begin,
                                   oracle_server.begin() + mine.end);
    EXPECT_EQ(bit_mismatches(server, want_server, "server memory"), 0u);
    // worker_decoded is this rank's own D(C(in)).
    std::vector<float> q;
    std::vector<std::uint8_t> payload;
    ASSERT_TRUE(ref::compress(desc, ctx, in[rank], payload).ok());
    q.assign(n, 0.0f);
    ASSERT_TRUE(ref::decompress(desc, ctx, payload, q).ok());
    EXPECT_EQ(bit_mismatches(decoded, q, "worker_decoded"), 0u);
  }
}

// ---- errors reach every rank -------------------------------------------------------------------

struct ErrorCase {
  Algorithm algorithm;
  const char* spec;
};
const ErrorCase kErrorCases[] = {{Algorithm::kDense, "identity"},
                                 {Algorithm::kAllgather, "topk:density=0.1"},
                                 {Algorithm::kSharedSupport, "randk:density=0.1"},
                                 {Algorithm::kMajority, "sign"},
                                 {Algorithm::kTwoPhase, "blocksign"}};

Status run_error_case(const ErrorCase& e, const CompressorDesc& desc, Span<const float> in,
                      Span<float> out) {
  const Case c{e.algorithm, e.spec, false};
  const ChunkRange mine = chunk_bounds(desc.n, world().size())[world().rank()];
  std::vector<float> server(mine.size(), 0.0f);
  return run_case(c, desc, world().rank(), in, out, server, 1.0, ReductionMode::kDeterministic);
}

TEST(CollectiveErrors, SizesDifferAcrossRanks) {
  Communicator& comm = world();
  for (const ErrorCase& e : kErrorCases) {
    const std::uint64_t n = comm.rank() == comm.size() - 1 ? 34 : 33;  // last rank differs
    const CompressorDesc desc = make_desc(e.spec, n);
    const std::vector<float> in = all_inputs(1, 1, n)[0];
    std::vector<float> out(n, 42.0f);
    const Status s = run_error_case(e, desc, in, out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << e.spec << ": " << s.to_string();
    EXPECT_NE(s.message().find("sizes differ"), std::string::npos) << s.message();
    for (float v : out) ASSERT_EQ(v, 42.0f) << e.spec << ": output written on error";
  }
}

TEST(CollectiveErrors, NanOnOneRankIsNonFiniteEverywhere) {
  Communicator& comm = world();
  for (const ErrorCase& e : kErrorCases) {
    const std::uint64_t n = 40;
    const CompressorDesc desc = make_desc(e.spec, n);
    std::vector<float> in = all_inputs(2, comm.size(), n)[comm.rank()];
    if (comm.rank() == comm.size() - 1) in[7] = std::nanf("");
    std::vector<float> out(n, 42.0f);
    const Status s = run_error_case(e, desc, in, out);
    EXPECT_EQ(s.code(), StatusCode::kNonFinite) << e.spec << ": " << s.to_string();
    for (float v : out) ASSERT_EQ(v, 42.0f) << e.spec << ": output written on error";
  }
}

TEST(CollectiveErrors, CorruptPayloadFromOneRankFailsEverywhere) {
  Communicator& comm = world();
  const std::uint64_t n = 64;
  const std::uint32_t bad_rank = comm.size() - 1;
  for (const char* spec : {"topk:density=0.1", "sign", "blocksign", "randk:density=0.1"}) {
    const CompressorDesc desc = make_desc(spec, n);
    const std::vector<float> in = all_inputs(3, comm.size(), n)[comm.rank()];
    std::vector<std::uint8_t> payload;
    ASSERT_TRUE(ref::compress(desc, context(comm.rank()), in, payload).ok());
    // The last rank's message claims a different length than it has (a truncated body).
    if (comm.rank() == bad_rank) payload.pop_back();
    std::vector<float> out(n, 42.0f);
    CollectiveOptions opt;
    Status s;
    const std::string name(spec);
    if (name == "sign") {
      s = coll::majority_vote(comm, ref_impl(), desc, context(comm.rank()), payload, out, opt,
                              nullptr);
    } else if (name == "blocksign") {
      std::vector<float> server(chunk_bounds(n, comm.size())[comm.rank()].size(), 0.0f);
      const std::vector<float> before = server;
      s = coll::two_phase_allreduce(comm, ref_impl(), desc, desc, context(comm.rank()), payload,
                                    server, 1.0, out, opt, nullptr);
      EXPECT_EQ(server, before) << "server memory changed on error";
    } else if (name == "topk:density=0.1") {
      s = coll::allgather_allreduce(comm, ref_impl(), desc, context(comm.rank()), payload, out, opt,
                                    nullptr);
    } else {
      s = coll::shared_support_allreduce(comm, ref_impl(), desc, context(comm.rank()), payload, out,
                                         opt, nullptr);
    }
    EXPECT_EQ(s.code(), StatusCode::kCorruptPayload) << spec << ": " << s.to_string();
    for (float v : out) ASSERT_EQ(v, 42.0f) << spec << ": output written on error";
  }
}

TEST(CollectiveErrors, DifferentAlgorithmsAcrossRanks) {
  Communicator& comm = world();
  const std::uint64_t n = 50;
  const CompressorDesc desc = make_desc("topk:density=0.1", n);
  const std::vector<float> in = all_inputs(4, 1, n)[0];
  std::vector<float> out(n);
  CollectiveOptions opt;
  const Algorithm a = comm.rank() == 0 ? Algorithm::kDense : Algorithm::kAllgather;
  const Status s = coll::compressed_allreduce(comm, a, ref_impl(), desc, context(comm.rank()), in,
                                              out, opt, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
}

// ---- the break-even rule -----------------------------------------------------------------------

TEST(BreakEven, RuleAndOverride) {
  const CompressorDesc topk = make_desc("topk:density=0.01", 100000);
  const std::uint64_t topk_bytes = ref::payload_bytes(topk);  // 32 + 8k: ratio 2 * density
  // density 0.01 < 1/P for P = 4 and P = 64, not for P = 256.
  EXPECT_EQ(coll::choose_algorithm(topk, topk_bytes, 4, coll::Reduction::kMean),
            Algorithm::kAllgather);
  EXPECT_EQ(coll::choose_algorithm(topk, topk_bytes, 64, coll::Reduction::kMean),
            Algorithm::kAllgather);
  EXPECT_EQ(coll::choose_algorithm(topk, topk_bytes, 256, coll::Reduction::kMean),
            Algorithm::kDense);
  const CompressorDesc randk = make_desc("randk:density=0.01", 1000);
  EXPECT_EQ(coll::choose_algorithm(randk, 0, 8, coll::Reduction::kMean), Algorithm::kSharedSupport);
  const CompressorDesc bs = make_desc("blocksign", 1000);
  EXPECT_EQ(coll::choose_algorithm(bs, 0, 8, coll::Reduction::kTwoWay), Algorithm::kTwoPhase);
  EXPECT_EQ(coll::choose_algorithm(bs, 0, 8, coll::Reduction::kMajority), Algorithm::kMajority);
  // Overrides by name, checked against the compressor.
  Result<Algorithm> forced =
      coll::resolve_algorithm("dense", topk, topk_bytes, 4, coll::Reduction::kMean);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(*forced, Algorithm::kDense);
  EXPECT_FALSE(
      coll::resolve_algorithm("shared-support", topk, topk_bytes, 4, coll::Reduction::kMean).ok());
  EXPECT_FALSE(coll::resolve_algorithm("ring", topk, topk_bytes, 4, coll::Reduction::kMean).ok());
}

}  // namespace
}  // namespace gradcomp::test
