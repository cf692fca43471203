// Runs under mpirun with 2 or 3 ranks (see tests/CMakeLists.txt): every rank executes
// every test, so each collective is matched across ranks.
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include "dist/communicator.h"
#include "dist/runtime.h"

namespace {

using namespace crsm::dist;

class MpiCommunicator : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { comm = make_mpi_communicator().release(); }
  static void TearDownTestSuite() { delete comm; }
  static Communicator* comm;
};
Communicator* MpiCommunicator::comm = nullptr;

TEST_F(MpiCommunicator, SeesTheLaunchedWorld) {
  EXPECT_EQ(comm->world_size(), runtime().world_size);
  EXPECT_EQ(comm->rank(), runtime().rank);
  EXPECT_GE(comm->world_size(), 2) << "launch this test with mpirun -np 2 or more";
}

TEST_F(MpiCommunicator, AllReduceSumsAndTakesTheMaximum) {
  const int w = comm->world_size(), r = comm->rank();
  auto t = torch::full({1000}, static_cast<float>(r + 1));
  comm->all_reduce(t, ReduceOp::kSum)->wait();
  EXPECT_TRUE(torch::all(t == static_cast<float>(w * (w + 1) / 2)).item<bool>());
  auto m = torch::tensor({static_cast<int64_t>(r), static_cast<int64_t>(-r)});
  all_reduce_now(*comm, m, ReduceOp::kMax);
  EXPECT_EQ(m[0].item<int64_t>(), w - 1);
  EXPECT_EQ(m[1].item<int64_t>(), 0);
}

TEST_F(MpiCommunicator, ReduceScatterLeavesEachRankItsSummedChunk) {
  const int w = comm->world_size(), r = comm->rank();
  auto input = torch::arange(4 * w, torch::kFloat) * static_cast<float>(r + 1);
  auto output = torch::empty({4});
  comm->reduce_scatter(input, output)->wait();
  const float scale = static_cast<float>(w * (w + 1) / 2);
  EXPECT_TRUE(torch::equal(output, torch::arange(4 * r, 4 * r + 4, torch::kFloat) * scale));
}

TEST_F(MpiCommunicator, AllGatherInPlaceCollectsEveryRanksChunk) {
  const int w = comm->world_size(), r = comm->rank();
  auto buffer = torch::zeros({3 * w}, torch::kDouble);
  buffer.narrow(0, 3 * r, 3).fill_(r + 0.5);
  comm->all_gather(buffer)->wait();
  for (int k = 0; k < w; ++k) EXPECT_TRUE(torch::all(buffer.narrow(0, 3 * k, 3) == k + 0.5).item<bool>());
}

TEST_F(MpiCommunicator, BroadcastsTensorsAndStrings) {
  auto t = torch::full({5}, static_cast<int64_t>(comm->rank() == 1 ? 7 : 0));
  comm->broadcast(t, 1)->wait();
  EXPECT_TRUE(torch::all(t == 7).item<bool>());
  EXPECT_EQ(broadcast_string(*comm, comm->rank() == 0 ? "runs/x/step_00000010" : "other"),
            "runs/x/step_00000010");
  EXPECT_EQ(all_reduce_scalar(*comm, 1.5), 1.5 * comm->world_size());
}

TEST_F(MpiCommunicator, OverlappingCollectivesCompleteInIssueOrder) {
  std::vector<torch::Tensor> buffers;
  std::vector<WorkPtr> works;
  for (int i = 0; i < 8; ++i) {
    buffers.push_back(torch::full({1 << 14}, static_cast<float>(i)));
    works.push_back(comm->all_reduce(buffers.back(), ReduceOp::kSum));
  }
  for (auto& w : works) {
    while (!w->poll()) {
    }
    w->wait();
  }
  for (int i = 0; i < 8; ++i)
    EXPECT_TRUE(torch::all(buffers[i] == static_cast<float>(i * comm->world_size())).item<bool>());
}

TEST_F(MpiCommunicator, ErrorsNameTheRankAndTheOperation) {
  auto wrong = torch::zeros({3});
  try {
    comm->reduce_scatter(torch::zeros({5}), wrong);
    FAIL() << "expected CommError";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rank " + std::to_string(comm->rank())), std::string::npos) << msg;
    EXPECT_NE(msg.find("reduce_scatter"), std::string::npos) << msg;
  }
  EXPECT_THROW(comm->all_reduce(torch::zeros({4}, torch::kBool), ReduceOp::kSum), CommError);
}

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::init_runtime(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // Only rank 0 reports; all ranks run every test so collectives match.
  if (crsm::dist::runtime().rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  // A failure on any rank fails the job.
  int any = failed;
  MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
