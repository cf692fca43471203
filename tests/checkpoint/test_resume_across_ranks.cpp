// Part of the MPI test binary (test_communicator_mpi.cpp has its main): every rank runs
// every test. Rank 0 owns the checkpoint directory; the others see it by its path.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../support/scratch_dir.h"
#include "checkpoint/store.h"
#include "dist/communicator.h"
#include "checkpoint/resume_across_ranks.h"

namespace {

namespace fs = std::filesystem;
using namespace crsm::dist;
using namespace crsm::checkpoint;

// The message of the CheckpointError that resolve_resume_across_ranks must throw on this
// rank ("" and a test failure if it returns instead).
std::string checkpoint_error_of(Communicator& comm, const std::string& spec, const std::string& root) {
  try {
    resolve_resume_across_ranks(comm, spec, root, nullptr);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << spec << " was accepted";
  return "";
}

class ResumeAcrossRanks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { comm = make_mpi_communicator().release(); }
  static void TearDownTestSuite() { delete comm; }

  void SetUp() override {
    // At world size 1 (the binary's NCCL run on one GPU) there is nothing to split.
    if (comm->world_size() < 2) GTEST_SKIP() << "needs 2 or more ranks";
    if (comm->rank() == 0) scratch_.emplace("resume_across_ranks");
    root = broadcast_string(*comm, scratch_ ? scratch_->str() : "");
  }
  void TearDown() override {
    comm->barrier();  // nobody still reads the directory rank 0 removes
    scratch_.reset();
  }

  // A checkpoint shaped like a real one: one large model file, smaller rank files.
  std::string save(int64_t step) {
    const auto tmp = begin_checkpoint(root, step);
    std::ofstream(fs::path(tmp) / "model.bin") << std::string(3000, 'm');
    for (const char* rank_file : {"rank00000.bin", "rank00001.bin", "rank00002.bin"})
      std::ofstream(fs::path(tmp) / rank_file) << std::string(1000, 'r');
    return commit_checkpoint(root, tmp, {{"step", step}}, 0);
  }

  // Flips a byte of a file that rank 0's share does not hash, so that only another rank
  // can notice; returns its name.
  std::string damage_where_rank0_does_not_look(const std::string& ckpt) {
    const std::string name = "rank00001.bin";
    std::fstream(fs::path(ckpt) / name, std::ios::in | std::ios::out | std::ios::binary).put('X');
    EXPECT_EQ(verify_checkpoint(ckpt, 0, comm->world_size()), "") << "rank 0 hashes " << name;
    EXPECT_NE(verify_checkpoint(ckpt), "");
    return name;
  }

  static Communicator* comm;
  std::string root;

 private:
  std::optional<crsm::testing::ScratchDir> scratch_;
};
Communicator* ResumeAcrossRanks::comm = nullptr;

TEST_F(ResumeAcrossRanks, AutoSkipsACheckpointOnlyAnotherRankFindsDamaged) {
  std::string damaged;
  if (comm->rank() == 0) {
    save(1);
    damaged = damage_where_rank0_does_not_look(save(2));
  }
  std::vector<std::string> skipped;
  const auto chosen = resolve_resume_across_ranks(*comm, "auto", root, &skipped);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(fs::path(*chosen).filename(), "step_00000001");
  if (comm->rank() == 0) {
    ASSERT_EQ(skipped.size(), 1u);
    EXPECT_NE(skipped[0].find("step_00000002"), std::string::npos) << skipped[0];
    EXPECT_NE(skipped[0].find(damaged), std::string::npos) << skipped[0];
  }
}

TEST_F(ResumeAcrossRanks, AnExplicitDamagedPathFailsOnEveryRank) {
  std::string ckpt;
  if (comm->rank() == 0) {
    save(1);
    ckpt = save(2);
    damage_where_rank0_does_not_look(ckpt);
  }
  ckpt = broadcast_string(*comm, ckpt);
  const std::string message = checkpoint_error_of(*comm, ckpt, root);
  EXPECT_NE(message.find("rank00001.bin"), std::string::npos) << message;
}

// Rank 0 fails before it has anything to verify; the others hear of it rather than
// waiting for a candidate.
TEST_F(ResumeAcrossRanks, APathThatIsNotThereFailsOnEveryRank) {
  const std::string missing = root + "/no_such_checkpoint";
  const std::string message = checkpoint_error_of(*comm, missing, root);
  EXPECT_NE(message.find("no_such_checkpoint"), std::string::npos) << message;
}

// A directory where a rank file should be makes reading it throw (on every rank, at the
// size check); each rank must still answer, so that the agreement completes.
TEST_F(ResumeAcrossRanks, DamageThatMakesReadingThrowIsSkippedOnEveryRank) {
  if (comm->rank() == 0) {
    save(1);
    const auto ckpt = save(2);
    fs::remove(fs::path(ckpt) / "rank00001.bin");
    fs::create_directory(fs::path(ckpt) / "rank00001.bin");
  }
  std::vector<std::string> skipped;
  const auto chosen = resolve_resume_across_ranks(*comm, "auto", root, &skipped);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(fs::path(*chosen).filename(), "step_00000001");
  if (comm->rank() == 0) EXPECT_EQ(skipped.size(), 1u);
}

TEST_F(ResumeAcrossRanks, EveryRankGetsTheSameAnswer) {
  std::vector<std::string> skipped;
  EXPECT_FALSE(resolve_resume_across_ranks(*comm, "auto", root, &skipped));
  if (comm->rank() == 0) save(5);
  const auto chosen = resolve_resume_across_ranks(*comm, "auto", root, &skipped);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(broadcast_string(*comm, *chosen), *chosen);
  EXPECT_TRUE(skipped.empty());
}

}  // namespace
