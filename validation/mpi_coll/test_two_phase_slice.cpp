// The slice wire form of two-phase phase 1 (coll::two_phase_slice, docs/wire-format.md "Slices")
// and the phase-1 volume it buys:
// - every slice is a valid payload of two_phase_slice_desc(up, chunk): its size is the
//   reference's payload_bytes of that descriptor, and its decode (reference and kk:serial) is the
//   chunk of the whole message's decode, bit for bit, for blocks / buckets / segments that
//   straddle chunk edges, every owner count and edge sizes;
// - bad messages and bad chunks are clear errors;
// - in the collective, the bytes a rank receives in phase 1 are (P-1) slices of its chunk, about
//   1/P of the allgatherv of whole messages that phase 1 used to be;
// - ranks whose descriptors give different slice layouts fail together (no truncated alltoallv).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/coll/compressed.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/ref/compress.hpp"
#include "gradcomp/wire_format.hpp"
#include "mpi_test_env.hpp"

namespace gradcomp::test {
namespace {

constexpr std::uint32_t kSliceStep = 5;

std::uint64_t hash64(std::uint64_t x) {
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ull;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 32);
}

// Real-valued (not dyadic) inputs with a few zero runs, so scales and norms are not round.
std::vector<float> input(std::uint64_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t h = hash64(seed * 7777 + i);
    v[i] =
        (i / 97) % 5 == 3 ? 0.0f : static_cast<float>(static_cast<double>(h % 200001) / 1e5 - 1.0);
  }
  return v;
}

CompressorDesc desc_of(const std::string& spec, std::uint64_t n) {
  const std::string full =
      spec + (spec.find(':') == std::string::npos ? ":" : ",") + "n=" + std::to_string(n);
  Result<CompressorDesc> d = parse_compressor(full);
  EXPECT_TRUE(d.ok()) << full << ": " << d.status().to_string();
  return d.ok() ? *d : CompressorDesc{};
}

CompressContext ctx_of(std::uint32_t rank) {
  CompressContext c;
  c.step = kSliceStep;
  c.tensor_id = 0;
  c.rank = rank;
  return c;
}

const CompressorImpl* kk_impl(const CompressorDesc& desc) {
  Result<const CompressorImpl*> r = select_impl(desc, "kk:serial");
  return r.ok() ? *r : nullptr;
}

const char* const kSliceSpecs[] = {
    "sign",
    "identity",
    "blocksign",                          // one block: its scale goes to every owner
    "blocksign:block=64",                 // blocks straddle chunks at odd P
    "blocksign:block=50,scale=l2",        // no block edge on a 32-element boundary
    "blocksign:block=7,scale=none",       // no scales at all
    "qsgd",                               // buckets of 512 straddle chunks
    "qsgd:levels=5,bucket=100",           // 4-bit fields
    "qsgd:levels=127,bucket=0,norm=max",  // 8-bit fields, one bucket
    "terngrad",                           // one scaler for everything
    "terngrad:clip=0",
};

TEST(TwoPhaseSlice, EverySliceDecodesToItsChunkOfTheWholeMessage) {
  for (const char* spec : kSliceSpecs) {
    for (std::uint64_t n : {1ull, 31ull, 33ull, 4097ull, 10000ull}) {
      const CompressorDesc up = desc_of(spec, n);
      ASSERT_TRUE(coll::two_phase_can_slice(up)) << spec;
      const std::vector<float> x = input(n, n + 3);
      std::vector<std::uint8_t> payload;
      ASSERT_TRUE(ref::compress(up, ctx_of(2), x, payload).ok()) << spec;
      std::vector<float> whole(n);
      ASSERT_TRUE(ref::decompress(up, ctx_of(2), payload, whole).ok()) << spec;
      for (std::uint32_t owners : {1u, 2u, 3u, 4u, 7u}) {
        const std::string what =
            std::string(spec) + " n=" + std::to_string(n) + " P=" + std::to_string(owners);
        const std::vector<ChunkRange> chunks = chunk_bounds(n, owners);
        std::vector<std::uint8_t> slices = {0xAB};  // appended after existing bytes
        std::vector<std::uint64_t> bytes;
        ASSERT_TRUE(coll::two_phase_slice(up, payload, chunks, slices, bytes).ok()) << what;
        ASSERT_EQ(bytes.size(), owners);
        EXPECT_EQ(slices[0], 0xAB) << what << ": existing bytes overwritten";
        std::uint64_t offset = 1, nonempty = 0, sum = 0;
        for (std::uint32_t j = 0; j < owners; ++j) {
          const ChunkRange c = chunks[j];
          if (c.size() == 0) {
            EXPECT_EQ(bytes[j], 0u) << what;
            continue;
          }
          ++nonempty;
          sum += bytes[j];
          const CompressorDesc sd = coll::two_phase_slice_desc(up, c);
          EXPECT_EQ(bytes[j], ref::payload_bytes(sd)) << what << " chunk " << j;
          const Span<const std::uint8_t> slice(slices.data() + offset, bytes[j]);
          offset += bytes[j];
          std::vector<float> got(c.size(), -9.0f);
          const Status s = ref::decompress(sd, ctx_of(2), slice, got);
          ASSERT_TRUE(s.ok()) << what << " chunk " << j << ": " << s.to_string();
          EXPECT_EQ(std::memcmp(got.data(), whole.data() + c.begin, 4 * c.size()), 0)
              << what << " chunk " << j << ": slice decode differs from the whole decode";
          if (const CompressorImpl* kk = kk_impl(sd)) {
            std::vector<float> kgot(c.size(), -9.0f);
            ASSERT_TRUE(kk->ops(sd.kind).decompress(sd, ctx_of(2), slice, kgot).ok()) << what;
            EXPECT_EQ(std::memcmp(kgot.data(), whole.data() + c.begin, 4 * c.size()), 0)
                << what << " chunk " << j << ": kk:serial slice decode differs";
          }
        }
        EXPECT_EQ(offset, slices.size()) << what;
        // All slices together: the whole body once, plus one header per owner and at most one
        // duplicated scale per inner chunk edge (a group straddling it).
        const std::uint64_t body = payload.size() - kHeaderBytes;
        EXPECT_GE(sum, body + kHeaderBytes * nonempty) << what;
        EXPECT_LE(sum, body + kHeaderBytes * nonempty + 4 * (nonempty - 1)) << what;
      }
    }
  }
}

TEST(TwoPhaseSlice, BadMessagesAndChunksAreErrorsAndLeaveTheOutputAlone) {
  const CompressorDesc up = desc_of("blocksign:block=64", 1000);
  std::vector<std::uint8_t> payload;
  ASSERT_TRUE(ref::compress(up, ctx_of(0), input(1000, 1), payload).ok());
  const std::vector<ChunkRange> chunks = chunk_bounds(1000, 3);
  std::vector<std::uint8_t> out = {1, 2, 3};
  std::vector<std::uint64_t> bytes;

  std::vector<std::uint8_t> truncated(payload.begin(), payload.end() - 1);
  EXPECT_EQ(coll::two_phase_slice(up, truncated, chunks, out, bytes).code(),
            StatusCode::kCorruptPayload);
  std::vector<std::uint8_t> header_only(payload.begin(), payload.begin() + 20);
  EXPECT_EQ(coll::two_phase_slice(up, header_only, chunks, out, bytes).code(),
            StatusCode::kCorruptPayload);
  std::vector<std::uint8_t> bad_count = payload;
  store_u32(bad_count.data() + 24, load_u32(bad_count.data() + 24) + 1);
  EXPECT_EQ(coll::two_phase_slice(up, bad_count, chunks, out, bytes).code(),
            StatusCode::kCorruptPayload);
  // A message of another layout (block 100 instead of 64): the body length does not match.
  std::vector<std::uint8_t> other;
  ASSERT_TRUE(
      ref::compress(desc_of("blocksign:block=100", 1000), ctx_of(0), input(1000, 1), other).ok());
  EXPECT_EQ(coll::two_phase_slice(up, other, chunks, out, bytes).code(),
            StatusCode::kCorruptPayload);
  // Chunks that cut a sign word, or leave the vector.
  EXPECT_EQ(coll::two_phase_slice(up, payload, {{0, 40}, {40, 1000}}, out, bytes).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(coll::two_phase_slice(up, payload, {{0, 1024}}, out, bytes).code(),
            StatusCode::kInvalidArgument);
  // No slicer for sparse messages.
  const CompressorDesc topk = desc_of("topk:density=0.1", 1000);
  std::vector<std::uint8_t> tp;
  ASSERT_TRUE(ref::compress(topk, ctx_of(0), input(1000, 1), tp).ok());
  EXPECT_FALSE(coll::two_phase_can_slice(topk));
  EXPECT_EQ(coll::two_phase_slice(topk, tp, chunks, out, bytes).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(out, (std::vector<std::uint8_t>{1, 2, 3}));
}

// Phase 1 receives (P-1) slices of this rank's chunk: about 1/P of the (P-1) whole messages an
// allgatherv delivers. Phase 2 is the owners' chunk messages.
TEST(TwoPhase, PhaseOneReceivesOnlyThisOwnersSlices) {
  Communicator& comm = world();
  const std::uint32_t p = comm.size(), rank = comm.rank();
  const std::uint64_t n = (1u << 18) + 5;
  for (const char* spec : {"blocksign:block=64", "sign", "qsgd", "terngrad"}) {
    const CompressorDesc desc = desc_of(spec, n);
    const std::vector<ChunkRange> chunks = chunk_bounds(n, p);
    std::vector<float> server(chunks[rank].size(), 0.0f), out(n);
    coll::CollStats stats;
    coll::CollectiveOptions opt;
    const CompressorImpl* ref_any = *select_impl(desc, "ref:any");
    ASSERT_TRUE(coll::two_phase_allreduce(comm, *ref_any, desc, desc, ctx_of(rank),
                                          input(n, 40 + rank), server, 1.0, out, Span<float>(), opt,
                                          &stats)
                    .ok());
    std::uint64_t phase2 = 0;
    for (std::uint32_t j = 0; j < p; ++j)
      if (j != rank) phase2 += ref::payload_bytes(coll::chunk_compressor(desc, chunks[j]));
    const std::uint64_t phase1 = stats.bytes_received - phase2;
    const std::uint64_t slice = ref::payload_bytes(coll::two_phase_slice_desc(desc, chunks[rank]));
    EXPECT_EQ(phase1, (p - 1) * slice) << spec;
    // What the allgatherv of whole messages delivered: (P-1) * |message|.
    const std::uint64_t whole = (p - 1) * ref::payload_bytes(desc);
    EXPECT_LE(phase1 * p, whole + p * (p - 1) * (kHeaderBytes + 8)) << spec;
    if (rank == 0)
      std::printf(
          "[two-phase %s n=%llu P=%u] phase-1 bytes received %llu (allgatherv: %llu, "
          "ratio %.4f)\n",
          spec, static_cast<unsigned long long>(n), p, static_cast<unsigned long long>(phase1),
          static_cast<unsigned long long>(whole),
          static_cast<double>(phase1) / static_cast<double>(whole));
  }
}

// Ranks whose descriptors slice differently (same kind and n, other block size) must all fail
// before the alltoallv, which would otherwise truncate on some ranks and hang the others.
TEST(TwoPhase, DifferentSliceLayoutsFailOnEveryRank) {
  Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP();
  const std::uint32_t rank = comm.rank();
  const std::uint64_t n = 1000;
  const CompressorDesc desc =
      desc_of(rank == comm.size() - 1 ? "blocksign:block=10" : "blocksign", n);
  std::vector<float> server(chunk_bounds(n, comm.size())[rank].size(), 0.0f), out(n, 42.0f);
  const Status s = coll::two_phase_allreduce(comm, **select_impl(desc, "ref:any"), desc, desc,
                                             ctx_of(rank), input(n, 7), server, 1.0, out,
                                             Span<float>(), coll::CollectiveOptions{}, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  for (float v : out) ASSERT_EQ(v, 42.0f) << "output written on error";
}

}  // namespace
}  // namespace gradcomp::test
