// `crsm_train rollouts` end to end (SPEC §9), as a user runs it: 1 and 2 ranks write the
// same rows, every row's label says whether its answer is the task's, and a collection
// killed with SIGKILL resumes to exactly the rows of one that never stopped. The files are
// read back with h5py (check_rollouts.py).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "../cli/cli_test_support.h"
#include "model/tensor_file.h"

namespace {

using namespace crsm::testing;
using Clock = std::chrono::steady_clock;

CommandResult check_rollouts(const std::string& args) {
  return run_command("/usr/bin/python3 " + source_path("tests/distill/check_rollouts.py") + " " + args);
}

// Prompt/answer tasks whose prompts open a line of a play, and whose answers are not yet
// anything the model says.
std::string write_text_tasks(const fs::path& path, int n) {
  const char* speakers[] = {"ROMEO", "JULIET", "KING HENRY", "MENENIUS", "FIRST CITIZEN", "GLOUCESTER"};
  std::string lines;
  for (int i = 0; i < n; ++i)
    lines += nlohmann::json({{"prompt", std::string(speakers[i % 6]) + ":\nI pray thee, " + std::to_string(i) + " "},
                             {"answer", "no such line"}})
                 .dump() +
             "\n";
  write_file(path, lines);
  return path.string();
}

class RolloutsCli : public ::testing::Test {
 protected:
  // A tiny backbone trained long enough to end most lines it starts, as plain text.
  static void SetUpTestSuite() {
    work = new TempDir("rollouts_cli");
    write_file(work->path() / "corpus.txt", read_file(source_path("data/tinyshakespeare.txt")).substr(0, 150000));
    const auto r = run_command(crsm_train("train --config " + source_path("configs/tiny.json") + " --data " +
                                          work->str("corpus.txt") + " --checkpoint-dir " + work->str("backbone") +
                                          " --threads 1 --no-value-loss --eval-every 0 --eval-batches 2 --max-steps 150"));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete work; }

  static CommandResult rollouts(int world, const std::string& tasks, const std::string& out, const std::string& extra) {
    return run_command("timeout 120 " + (world == 1 ? std::string() : mpirun(world)) +
                       crsm_train("rollouts --model " + work->str("backbone") + " --tasks " + tasks +
                                  " --output-path " + work->str(out) + " --threads 1 " + extra));
  }

  static TempDir* work;
};
TempDir* RolloutsCli::work = nullptr;

// Tasks whose answers are set to what the model samples get right rows, the others none.
TEST_F(RolloutsCli, AreTheSameOnOneAndTwoRanksAndLabelledAgainstTheAnswers) {
  const std::string sample = "--samples 8 --max-new-tokens 48";
  const auto tasks = write_text_tasks(work->path() / "tasks.jsonl", 5);
  const auto first = rollouts(1, tasks, "first", sample);
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("0 of 5 test outputs have a right answer"), std::string::npos) << first.output;
  const std::string answered = work->str("answered.jsonl");
  const auto made = check_rollouts("answer-with " + work->str("first/rollouts.h5") + " " + tasks + " " + answered + " 3");
  ASSERT_EQ(made.status, 0) << made.output;
  for (int world : {1, 2}) {
    const std::string out = "w" + std::to_string(world);
    const auto r = rollouts(world, answered, out, sample);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("rollouts: 40 rows in " + work->str(out) + "/rollouts.h5"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("3 of 5 test outputs have a right answer"), std::string::npos) << r.output;
    const auto labelled = check_rollouts("labels " + work->str(out) + "/rollouts.h5 " + answered);
    EXPECT_EQ(labelled.status, 0) << labelled.output;
  }
  const auto same = check_rollouts("same " + work->str("w1/rollouts.h5") + " " + work->str("w2/rollouts.h5"));
  EXPECT_EQ(same.status, 0) << same.output;
  EXPECT_NE(same.output.find("same: 40 rows"), std::string::npos) << same.output;
  const auto described = check_rollouts("describe " + work->str("w2/rollouts.h5"));
  ASSERT_EQ(described.status, 0) << described.output;
  const auto d = nlohmann::json::parse(described.output);
  EXPECT_EQ(d["dtypes"]["label"], "uint8");
  EXPECT_EQ(d["dtypes"]["logprob"], "float64");
  EXPECT_EQ(d["dtypes"]["answer"], "int32");
  EXPECT_EQ(d["attrs"]["samples"], 8);
  EXPECT_EQ(d["attrs"]["answer_width"], 48);
  EXPECT_EQ(d["attrs"]["model_sha256"].get<std::string>().size(), 64u);
}

// SIGKILL while sampling; the same command again ends with exactly the rows of a
// collection that never stopped, keeping what was flushed.
TEST_F(RolloutsCli, AKilledCollectionResumesToExactlyTheUninterruptedRows) {
  const auto tasks = write_text_tasks(work->path() / "many_tasks.jsonl", 60);
  const std::string args = "--samples 8 --max-new-tokens 24 --chunk-rows 8";
  const std::string rank_file = work->str("killed/rollouts/rank00000.h5");
  Job job = spawn(crsm_train("rollouts --model " + work->str("backbone") + " --tasks " + tasks + " --output-path " +
                             work->str("killed") + " --threads 1 " + args),
                  work->str("killed.log"));
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::error_code ec;
  while (Clock::now() < deadline && !(fs::exists(rank_file, ec) && fs::file_size(rank_file, ec) > (48u << 10)))
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  job.kill();
  const auto described = check_rollouts("describe " + rank_file);  // h5py opens what the killed writer left
  ASSERT_EQ(described.status, 0) << described.output;
  const int64_t kept = nlohmann::json::parse(described.output)["rows"];
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, 480) << "the collection finished before it was killed";
  const auto resumed = rollouts(1, tasks, "killed", args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find(std::to_string(kept) + " rows kept from an earlier run"), std::string::npos)
      << resumed.output;
  const auto clean = rollouts(1, tasks, "clean", args);
  ASSERT_EQ(clean.status, 0) << clean.output;
  const auto same = check_rollouts("same " + work->str("killed/rollouts.h5") + " " + work->str("clean/rollouts.h5"));
  EXPECT_EQ(same.status, 0) << same.output;
  EXPECT_NE(same.output.find("same: 480 rows"), std::string::npos) << same.output;
}

// SIGUSR1 (mpirun passes it to the ranks) while sampling on 2 ranks: status 4 between test outputs, every flushed row
// kept, and the same command again ends with the rows of a collection that never stopped.
TEST_F(RolloutsCli, APreemptionSignalStopsBetweenTestOutputsAndTheRerunCompletes) {
  const auto tasks = write_text_tasks(work->path() / "signal_tasks.jsonl", 60);
  const std::string args = "--samples 8 --max-new-tokens 24 --chunk-rows 8";
  const std::string rank_file = work->str("signalled/rollouts/rank00000.h5");
  Job job = spawn(mpirun(2) + crsm_train("rollouts --model " + work->str("backbone") + " --tasks " + tasks +
                                         " --output-path " + work->str("signalled") + " --threads 1 " + args),
                  work->str("signalled.log"));
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::error_code ec;
  while (Clock::now() < deadline && !(fs::exists(rank_file, ec) && fs::file_size(rank_file, ec) > (24u << 10)))
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(job.pid, SIGUSR1);
  const int status = wait_for(job, 120);
  const std::string log = read_file(job.log);
  EXPECT_EQ(status, 4) << log;
  EXPECT_NE(log.find("rollouts: preempted by SIGUSR1; every flushed row is kept"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(work->path() / "signalled" / "rollouts.h5")) << "no master for an unfinished collection";
  const auto resumed = rollouts(2, tasks, "signalled", args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("rows kept from an earlier run"), std::string::npos) << resumed.output;
  const auto clean = rollouts(1, tasks, "signal_clean", args);
  ASSERT_EQ(clean.status, 0) << clean.output;
  const auto same = check_rollouts("same " + work->str("signalled/rollouts.h5") + " " + work->str("signal_clean/rollouts.h5"));
  EXPECT_EQ(same.status, 0) << same.output;
  EXPECT_NE(same.output.find("same: 480 rows"), std::string::npos) << same.output;
}

// Continuing on another number of ranks, or with other settings, is refused before any
// work, naming the file and what to do; the kept rows stay.
TEST_F(RolloutsCli, AContinuationOfAnotherPlanIsRefusedNamingTheFile) {
  const auto tasks = write_text_tasks(work->path() / "few_tasks.jsonl", 3);
  const auto once = rollouts(1, tasks, "kept", "--samples 2 --max-new-tokens 8");
  ASSERT_EQ(once.status, 0) << once.output;
  const auto ranks = rollouts(2, tasks, "kept", "--samples 2 --max-new-tokens 8");
  EXPECT_EQ(ranks.status, 2) << ranks.output;
  EXPECT_NE(ranks.output.find("rank00000.h5: collected by 1 rank, and rank r's file holds rank r's items: continue "
                              "it with 1 rank (this run has 2)"),
            std::string::npos)
      << ranks.output;
  const auto other = rollouts(1, tasks, "kept", "--samples 3 --max-new-tokens 8");
  EXPECT_EQ(other.status, 2) << other.output;
  EXPECT_NE(other.output.find("rank00000.h5: field 'samples' is 2, but this collection has 3"), std::string::npos)
      << other.output;
  EXPECT_NE(other.output.find("or remove " + work->str("kept") + " to sample anew"), std::string::npos) << other.output;
  const auto described = check_rollouts("describe " + work->str("kept/rollouts.h5"));
  ASSERT_EQ(described.status, 0) << described.output;
  EXPECT_EQ(nlohmann::json::parse(described.output)["rows"], 6);
}

// Outcome values (SPEC §3) train the value heads alone on the rollouts, on the shared
// loop: a run continued from its step-4 checkpoint ends bit-identical to one that never
// stopped, and the backbone it started from is unchanged in it.
TEST_F(RolloutsCli, OutcomeValueTrainingResumesExactlyAndLeavesTheBackbone) {
  const auto tasks = write_text_tasks(work->path() / "outcome_tasks.jsonl", 40);
  const auto collected = rollouts(1, tasks, "outcome_rollouts", "--samples 6 --max-new-tokens 16");
  ASSERT_EQ(collected.status, 0) << collected.output;
  const std::string args = "train --config " + source_path("configs/tiny.json") + " --value-target outcome --rollouts " +
                           work->str("outcome_rollouts/rollouts.h5") + " --max-steps 8 --save-every 4 --keep-last 0 "
                           "--batch-size 16 --eval-every 4 --log-every 2 --threads 1 --checkpoint-dir ";
  const auto whole = run_command(crsm_train(args + work->str("outcome_whole") + " --resume " + work->str("backbone")));
  ASSERT_EQ(whole.status, 0) << whole.output;
  EXPECT_NE(whole.output.find("held-out rollouts"), std::string::npos) << whole.output;
  const auto val = metrics_of(work->path() / "outcome_whole", "val");
  ASSERT_EQ(val.size(), 2u);
  for (const char* key : {"loss", "auc_first", "auc_mid", "auc_end", "ece_end", "pick", "first", "any"})
    EXPECT_TRUE(val[1].contains(key)) << key;
  fs::copy(work->path() / "outcome_whole", work->path() / "outcome_cut", fs::copy_options::recursive);
  fs::remove_all(work->path() / "outcome_cut" / "checkpoints" / "step_00000008");
  write_file(work->path() / "outcome_cut" / "checkpoints" / "latest", "step_00000004\n");
  const auto resumed = run_command(crsm_train(args + work->str("outcome_cut") + " --resume auto"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resume: continuing from"), std::string::npos) << resumed.output;
  const auto end = crsm::model::load_tensor_file(work->str("outcome_whole/checkpoints/step_00000008/model.safetensors"));
  const auto again = crsm::model::load_tensor_file(work->str("outcome_cut/checkpoints/step_00000008/model.safetensors"));
  ASSERT_EQ(end.size(), again.size());
  for (size_t i = 0; i < end.size(); ++i) EXPECT_TRUE(end[i].second.equal(again[i].second)) << end[i].first;
  const auto start = crsm::model::load_tensor_file(
      work->str("backbone/checkpoints/" + read_file(work->path() / "backbone" / "checkpoints" / "latest").substr(0, 13) +
                "/model.safetensors"));
  ASSERT_EQ(start.size(), end.size());
  int heads = 0;
  for (size_t i = 0; i < end.size(); ++i) {
    const bool head = end[i].first.rfind("value_heads.", 0) == 0;
    heads += head;
    EXPECT_EQ(start[i].second.equal(end[i].second), !head) << end[i].first;
  }
  EXPECT_GT(heads, 0);
}

}  // namespace
