// MPI main for GoogleTest: every rank runs every test (the tests are collective); only rank 0
// prints, and the process exit code is non-zero on every rank if any rank failed a test, so a
// failure on rank 2 fails the CTest run.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>

#include "gradcomp/coll/mpi_communicator.hpp"
#include "mpi_test_env.hpp"

namespace gradcomp::test {
namespace {
std::unique_ptr<Communicator> g_world;

// Reports failures of non-zero ranks (rank 0's are printed by GoogleTest itself).
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed()) {
      std::fprintf(stderr, "[rank %d] FAILURE %s:%d\n%s\n", rank_,
                   r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
    }
  }

 private:
  int rank_;
};
}  // namespace

Communicator& world() { return *g_world; }
}  // namespace gradcomp::test

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  auto made = gradcomp::coll::make_mpi_communicator(MPI_COMM_WORLD);
  if (!made.ok()) {
    std::fprintf(stderr, "%s\n", made.status().to_string().c_str());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  gradcomp::test::g_world = std::move(made).value();
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new gradcomp::test::RankFailurePrinter(rank));
  }
  const int local = RUN_ALL_TESTS() == 0 ? 0 : 1;
  int any = 0;
  MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any && !local) std::fprintf(stderr, "FAILED on another rank (see [rank N])\n");
  gradcomp::test::g_world.reset();
  MPI_Finalize();
  return any;
}
