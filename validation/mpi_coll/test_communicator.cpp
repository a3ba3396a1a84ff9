// The MPI communicator: each primitive against values every rank can compute alone (rank r's
// data is a closed-form function of r and the index), in-place where the interface allows it,
// and MPI's own errors coming back as kMpiError statuses.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "gradcomp/coll/mpi_communicator.hpp"
#include "mpi_test_env.hpp"

namespace gradcomp::test {
namespace {

float value(std::uint32_t rank, std::uint64_t i) {
  return static_cast<float>(static_cast<int>((i * 7 + rank * 13) % 29) - 14);  // small integers
}

TEST(Communicator, RankSizeBackend) {
  Communicator& c = world();
  int r = 0, s = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  EXPECT_EQ(c.rank(), static_cast<std::uint32_t>(r));
  EXPECT_EQ(c.size(), static_cast<std::uint32_t>(s));
  EXPECT_STREQ(c.backend(), "mpi");
  EXPECT_FALSE(c.device_buffers());
  EXPECT_EQ(coll::make_mpi_communicator(MPI_COMM_NULL).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(Communicator, AllreduceSumMaxMinOutOfPlaceAndInPlace) {
  Communicator& c = world();
  const std::uint64_t n = 1001;
  std::vector<float> in(n), out(n, -99.0f);
  for (std::uint64_t i = 0; i < n; ++i) in[i] = value(c.rank(), i);
  ASSERT_TRUE(c.allreduce(in.data(), out.data(), n, DType::kF32, ReduceOp::kSum).ok());
  for (std::uint64_t i = 0; i < n; ++i) {
    float want = 0.0f;
    for (std::uint32_t r = 0; r < c.size(); ++r) want += value(r, i);
    ASSERT_EQ(out[i], want) << i;
  }
  std::vector<float> buf = in;
  ASSERT_TRUE(c.allreduce(buf.data(), buf.data(), n, DType::kF32, ReduceOp::kMax).ok());
  std::vector<std::int32_t> ibuf(n);
  for (std::uint64_t i = 0; i < n; ++i) ibuf[i] = static_cast<std::int32_t>(value(c.rank(), i));
  ASSERT_TRUE(c.allreduce(ibuf.data(), ibuf.data(), n, DType::kS32, ReduceOp::kMin).ok());
  for (std::uint64_t i = 0; i < n; ++i) {
    float mx = value(0, i), mn = value(0, i);
    for (std::uint32_t r = 1; r < c.size(); ++r) {
      mx = std::max(mx, value(r, i));
      mn = std::min(mn, value(r, i));
    }
    ASSERT_EQ(buf[i], mx) << i;
    ASSERT_EQ(ibuf[i], static_cast<std::int32_t>(mn)) << i;
  }
  // f16 has no MPI sum: an error, not a wrong answer.
  EXPECT_EQ(c.allreduce(in.data(), out.data(), 2, DType::kF16, ReduceOp::kSum).code(),
            StatusCode::kUnimplemented);
}

TEST(Communicator, ReduceScatter) {
  Communicator& c = world();
  const std::uint64_t count = 37;
  std::vector<double> in(count * c.size()), out(count, -1.0);
  for (std::uint64_t i = 0; i < in.size(); ++i) in[i] = value(c.rank(), i);
  ASSERT_TRUE(c.reduce_scatter(in.data(), out.data(), count, DType::kF64, ReduceOp::kSum).ok());
  for (std::uint64_t j = 0; j < count; ++j) {
    double want = 0.0;
    for (std::uint32_t r = 0; r < c.size(); ++r) want += value(r, c.rank() * count + j);
    ASSERT_EQ(out[j], want) << j;
  }
}

TEST(Communicator, AllgatherOutOfPlaceAndInPlace) {
  Communicator& c = world();
  const std::uint64_t bytes = 13;
  std::vector<std::uint8_t> mine(bytes), all(bytes * c.size(), 0);
  for (std::uint64_t b = 0; b < bytes; ++b) mine[b] = static_cast<std::uint8_t>(c.rank() * 31 + b);
  ASSERT_TRUE(c.allgather(mine.data(), all.data(), bytes).ok());
  std::vector<std::uint8_t> inplace(bytes * c.size(), 0);
  std::copy(mine.begin(), mine.end(), inplace.begin() + c.rank() * bytes);
  ASSERT_TRUE(c.allgather(inplace.data() + c.rank() * bytes, inplace.data(), bytes).ok());
  for (std::uint32_t r = 0; r < c.size(); ++r)
    for (std::uint64_t b = 0; b < bytes; ++b) {
      ASSERT_EQ(all[r * bytes + b], static_cast<std::uint8_t>(r * 31 + b));
      ASSERT_EQ(inplace[r * bytes + b], static_cast<std::uint8_t>(r * 31 + b));
    }
}

TEST(Communicator, AllgathervVariableSizesAndSizeCheck) {
  Communicator& c = world();
  const std::uint32_t p = c.size();
  std::vector<std::uint64_t> bytes(p), offsets(p);
  std::uint64_t total = 0;
  for (std::uint32_t r = 0; r < p; ++r) {
    bytes[r] = r * 5 + (r == 1 ? 0 : 3);  // rank 1 sends nothing
    offsets[r] = total;
    total += bytes[r];
  }
  std::vector<std::uint8_t> mine(bytes[c.rank()]);
  for (std::size_t b = 0; b < mine.size(); ++b)
    mine[b] = static_cast<std::uint8_t>(100 + c.rank() + b);
  std::vector<std::uint8_t> all(total, 0);
  ASSERT_TRUE(c.allgatherv(mine.data(), mine.size(), all.data(), bytes, offsets).ok());
  for (std::uint32_t r = 0; r < p; ++r)
    for (std::uint64_t b = 0; b < bytes[r]; ++b)
      ASSERT_EQ(all[offsets[r] + b], static_cast<std::uint8_t>(100 + r + b));
  // send_bytes disagreeing with recv_bytes[rank] is caught before MPI is called (every rank
  // makes the same mistake here, so no rank is left waiting).
  const Status bad = c.allgatherv(mine.data(), mine.size() + 1, all.data(), bytes, offsets);
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("recv_bytes"), std::string::npos) << bad.message();
}

TEST(Communicator, AlltoallAndAlltoallv) {
  Communicator& c = world();
  const std::uint32_t p = c.size();
  const std::uint64_t bytes = 6;
  std::vector<std::uint8_t> send(bytes * p), recv(bytes * p, 0);
  for (std::uint32_t j = 0; j < p; ++j)
    for (std::uint64_t b = 0; b < bytes; ++b)
      send[j * bytes + b] = static_cast<std::uint8_t>(c.rank() * 16 + j * 4 + b);
  ASSERT_TRUE(c.alltoall(send.data(), recv.data(), bytes).ok());
  for (std::uint32_t i = 0; i < p; ++i)
    for (std::uint64_t b = 0; b < bytes; ++b)
      ASSERT_EQ(recv[i * bytes + b], static_cast<std::uint8_t>(i * 16 + c.rank() * 4 + b));
  // alltoallv: rank i sends (i + j) % 3 + 1 bytes to rank j.
  auto len = [](std::uint32_t from, std::uint32_t to) -> std::uint64_t {
    return (from + to) % 3 + 1;
  };
  std::vector<std::uint64_t> sb(p), so(p), rb(p), ro(p);
  std::uint64_t st = 0, rt = 0;
  for (std::uint32_t j = 0; j < p; ++j) {
    sb[j] = len(c.rank(), j), so[j] = st, st += sb[j];
    rb[j] = len(j, c.rank()), ro[j] = rt, rt += rb[j];
  }
  std::vector<std::uint8_t> vs(st), vr(rt, 0);
  for (std::uint32_t j = 0; j < p; ++j)
    for (std::uint64_t b = 0; b < sb[j]; ++b)
      vs[so[j] + b] = static_cast<std::uint8_t>(c.rank() * 10 + j + b);
  ASSERT_TRUE(c.alltoallv(vs.data(), sb, so, vr.data(), rb, ro).ok());
  for (std::uint32_t i = 0; i < p; ++i)
    for (std::uint64_t b = 0; b < rb[i]; ++b)
      ASSERT_EQ(vr[ro[i] + b], static_cast<std::uint8_t>(i * 10 + c.rank() + b));
}

TEST(Communicator, BroadcastBarrierAndBadRoot) {
  Communicator& c = world();
  const std::uint32_t root = c.size() - 1;
  std::vector<std::uint8_t> buf(100, static_cast<std::uint8_t>(c.rank()));
  ASSERT_TRUE(c.broadcast(buf.data(), buf.size(), root).ok());
  for (std::uint8_t v : buf) ASSERT_EQ(v, static_cast<std::uint8_t>(root));
  EXPECT_EQ(c.broadcast(buf.data(), buf.size(), c.size()).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c.barrier().ok());
}

// A genuine MPI error (a receive buffer too small for what the peer sends, MPI_ERR_TRUNCATE)
// comes back as kMpiError with MPI's text, not as an abort. Run on a
// communicator of its own so that the world communicator stays clean.
TEST(Communicator, MpiErrorBecomesStatus) {
  auto made = coll::make_mpi_communicator(MPI_COMM_WORLD);
  ASSERT_TRUE(made.ok());
  Communicator& c = **made;
  const std::uint32_t p = c.size();
  std::vector<std::uint64_t> sb(p, 0), so(p, 0), rb(p, 0), ro(p, 0);
  // Every rank sends 8 bytes to its right neighbour, which expects only 4: every rank sees the
  // truncation, so none is left waiting for a peer that gave up.
  sb[(c.rank() + 1) % p] = 8;
  rb[(c.rank() + p - 1) % p] = 4;
  std::vector<std::uint8_t> send(8, 1), recv(8, 0);
  const Status s = c.alltoallv(send.data(), sb, so, recv.data(), rb, ro);
  EXPECT_EQ(s.code(), StatusCode::kMpiError) << s.to_string();
  EXPECT_NE(s.message().find("MPI_Alltoallv"), std::string::npos) << s.message();
  EXPECT_TRUE(world().barrier().ok());
}

}  // namespace
}  // namespace gradcomp::test
