// Runs under mpirun (see tests/CMakeLists.txt): every rank executes every test, so each
// collective is matched across ranks. With CRSM_TEST_BACKEND=nccl the same tests run
// through the NCCL backend on each rank's GPU (local rank), e.g. on a GPU machine.
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <cstdlib>

#include "dist/communicator.h"
#include "dist/runtime.h"

namespace {

using namespace crsm::dist;

bool use_nccl() {
  const char* backend = std::getenv("CRSM_TEST_BACKEND");
  return backend && std::string(backend) == "nccl";
}

class MpiCommunicator : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    comm = (use_nccl() ? make_nccl_communicator(runtime().local_rank) : make_mpi_communicator()).release();
  }
  static void TearDownTestSuite() { delete comm; }
  // Tensors live where the backend wants them; results are checked on the CPU.
  static torch::Tensor on(const torch::Tensor& t) { return t.to(comm->device()); }
  static Communicator* comm;
};
Communicator* MpiCommunicator::comm = nullptr;

TEST_F(MpiCommunicator, SeesTheLaunchedWorld) {
  EXPECT_EQ(comm->world_size(), runtime().world_size);
  EXPECT_EQ(comm->rank(), runtime().rank);
  if (!use_nccl()) EXPECT_GE(comm->world_size(), 2) << "launch this test with mpirun -np 2 or more";
  EXPECT_EQ(comm->backend(), use_nccl() ? "nccl" : "mpi");
}

TEST_F(MpiCommunicator, AllReduceSumsAndTakesTheMaximum) {
  const int w = comm->world_size(), r = comm->rank();
  auto t = on(torch::full({1000}, static_cast<float>(r + 1)));
  comm->all_reduce(t, ReduceOp::kSum)->wait();
  EXPECT_TRUE(torch::all(t.cpu() == static_cast<float>(w * (w + 1) / 2)).item<bool>());
  auto m = on(torch::tensor({static_cast<int64_t>(r), static_cast<int64_t>(-r)}));
  all_reduce_now(*comm, m, ReduceOp::kMax);
  EXPECT_EQ(m.cpu()[0].item<int64_t>(), w - 1);
  EXPECT_EQ(m.cpu()[1].item<int64_t>(), 0);
}

TEST_F(MpiCommunicator, ReduceScatterLeavesEachRankItsSummedChunk) {
  const int w = comm->world_size(), r = comm->rank();
  auto input = on(torch::arange(4 * w, torch::kFloat) * static_cast<float>(r + 1));
  auto output = on(torch::empty({4}));
  comm->reduce_scatter(input, output)->wait();
  const float scale = static_cast<float>(w * (w + 1) / 2);
  EXPECT_TRUE(torch::equal(output.cpu(), torch::arange(4 * r, 4 * r + 4, torch::kFloat) * scale));
}

TEST_F(MpiCommunicator, AllGatherInPlaceCollectsEveryRanksChunk) {
  const int w = comm->world_size(), r = comm->rank();
  auto buffer = torch::zeros({3 * w}, torch::kDouble);
  buffer.narrow(0, 3 * r, 3).fill_(r + 0.5);
  buffer = on(buffer);
  comm->all_gather(buffer)->wait();
  buffer = buffer.cpu();
  for (int k = 0; k < w; ++k) EXPECT_TRUE(torch::all(buffer.narrow(0, 3 * k, 3) == k + 0.5).item<bool>());
}

TEST_F(MpiCommunicator, BroadcastsTensorsAndStrings) {
  const int root = comm->world_size() - 1;
  auto t = on(torch::full({5}, static_cast<int64_t>(comm->rank() == root ? 7 : 0)));
  comm->broadcast(t, root)->wait();
  EXPECT_TRUE(torch::all(t.cpu() == 7).item<bool>());
  EXPECT_EQ(broadcast_string(*comm, comm->rank() == 0 ? "runs/x/step_00000010" : "other"),
            "runs/x/step_00000010");
  EXPECT_EQ(all_reduce_scalar(*comm, 1.5), 1.5 * comm->world_size());
}

TEST_F(MpiCommunicator, OverlappingCollectivesCompleteInIssueOrder) {
  std::vector<torch::Tensor> buffers;
  std::vector<WorkPtr> works;
  for (int i = 0; i < 8; ++i) {
    buffers.push_back(on(torch::full({1 << 14}, static_cast<float>(i))));
    works.push_back(comm->all_reduce(buffers.back(), ReduceOp::kSum));
  }
  for (auto& w : works) {
    while (!w->poll()) {
    }
    w->wait();
  }
  for (int i = 0; i < 8; ++i)
    EXPECT_TRUE(torch::all(buffers[i].cpu() == static_cast<float>(i * comm->world_size())).item<bool>());
}

TEST_F(MpiCommunicator, ErrorsNameTheRankAndTheOperation) {
  auto wrong = on(torch::zeros({3}));
  try {
    comm->reduce_scatter(on(torch::zeros({3 * comm->world_size() + 1})), wrong);
    FAIL() << "expected CommError";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rank " + std::to_string(comm->rank())), std::string::npos) << msg;
    EXPECT_NE(msg.find("reduce_scatter"), std::string::npos) << msg;
  }
  EXPECT_THROW(comm->all_reduce(on(torch::zeros({4}, torch::kBool)), ReduceOp::kSum), CommError);
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
