// Stages 2 and 3 end to end, as a user runs them: `crsm_train distill` on 1 and 2 ranks
// collects the same transitions, a collection killed with SIGKILL resumes to exactly the
// rows of one that never stopped, dynamics training resumes exactly, and the assembled
// checkpoint generates and is checked. The files are read back with h5py.
#include <gtest/gtest.h>

#include <regex>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "../cli/cli_test_support.h"
#include "model/tensor_file.h"

namespace {

using namespace crsm::testing;
using Clock = std::chrono::steady_clock;

CommandResult python(const std::string& args) {
  return run_command("/usr/bin/python3 " + source_path("tests/distill/check_transitions.py") + " " + args);
}

class DistillCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new TempDir("distill_cli");
    const auto prep = prepare_shakespeare_prefix(*work, 150000);
    ASSERT_EQ(prep.status, 0) << prep.output;
    const auto r = run_command(crsm_train("train --config " + source_path("configs/tiny.json") + " --data " +
                                          work->str("data") + " --checkpoint-dir " + work->str("backbone") +
                                          " --threads 1 --no-value-loss --eval-every 0 --eval-batches 2 --max-steps 20"));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete work; }

  static std::string distill_args(const std::string& out, const std::string& extra) {
    return "distill --model-path " + work->str("backbone") + " --output-path " + work->str(out) + " --threads 1 " + extra;
  }
  static CommandResult distill(int world, const std::string& out, const std::string& extra) {
    return run_command("timeout 240 " + (world == 1 ? std::string() : mpirun(world)) + crsm_train(distill_args(out, extra)));
  }
  static std::string master(const std::string& out, const std::string& split = "train") {
    return work->str(out) + "/transitions/" + split + ".h5";
  }

  static TempDir* work;
};
TempDir* DistillCli::work = nullptr;

TEST_F(DistillCli, OneAndTwoRanksCollectTheSameTransitions) {
  const std::string collect = "--data " + work->str("data") + " --num-samples 3000 --val-samples 500 --collect-only ";
  const auto one = distill(1, "one", collect);
  ASSERT_EQ(one.status, 0) << one.output;
  const auto two = distill(2, "two", collect + "--dtype float32 --compression gzip");
  ASSERT_EQ(two.status, 0) << two.output;
  for (const char* split : {"train", "val"}) {
    const auto same = python("same " + master("one", split) + " " + master("two", split) + " 1e-5");
    EXPECT_EQ(same.status, 0) << same.output;
    const auto consistent = python("consistent " + master("two", split));
    EXPECT_EQ(consistent.status, 0) << consistent.output;
  }
  const auto described = python("describe " + master("two") + " " + work->str("two/transitions/train/rank00000.h5") +
                                " " + work->str("two/transitions/train/rank00001.h5"));
  ASSERT_EQ(described.status, 0) << described.output;
  const auto files = nlohmann::json::parse(described.output);
  EXPECT_EQ(files[0]["datasets"]["state"]["shape"], nlohmann::json({3000, 2, 32}));
  EXPECT_EQ(files[0]["datasets"]["action"]["dtype"], "int32");
  EXPECT_EQ(files[0]["datasets"]["seq"]["dtype"], "int64");
  EXPECT_TRUE(files[0]["datasets"]["pos"]["virtual"].get<bool>());
  EXPECT_EQ(files[0]["attrs"]["format_version"], 1);
  EXPECT_EQ(files[0]["attrs"]["backbone_sha256"].get<std::string>().size(), 64u);
  const int64_t rows0 = files[1]["datasets"]["pos"]["shape"][0], rows1 = files[2]["datasets"]["pos"]["shape"][0];
  EXPECT_EQ(rows0 + rows1, 3000);
  EXPECT_GT(rows0, 0);
  EXPECT_GT(rows1, 0);
}

// A collection cut inside a batch (here in the second window of the second batch of 16
// windows) resumes by computing the later windows in the batches an uninterrupted
// collection uses: a window's rows depend in their last bits on the batch around it, so
// only then are the rows exactly those of a collection that never stopped.
TEST_F(DistillCli, AResumeInsideABatchGivesExactlyTheUninterruptedRows) {
  const std::string collect = "--data " + work->str("data") + " --num-samples 60000 --val-samples 200 --collect-only";
  const auto whole = distill(1, "whole", collect);
  ASSERT_EQ(whole.status, 0) << whole.output;
  fs::copy(work->str("whole"), work->str("cut"), fs::copy_options::recursive);
  const int64_t cut = 17 * 32;  // windows of 32 rows (tiny.json's seq_len)
  const auto truncated = python("truncate " + work->str("cut/transitions/train/rank00000.h5") + " " + std::to_string(cut));
  ASSERT_EQ(truncated.status, 0) << truncated.output;
  const auto resumed = distill(1, "cut", collect);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("(" + std::to_string(cut) + " kept from an earlier run"), std::string::npos) << resumed.output;
  const auto same = python("same " + master("cut") + " " + master("whole") + " 0");
  EXPECT_EQ(same.status, 0) << same.output;
}

// SIGKILL in the middle of collection; the same command again ends with exactly the rows
// of a collection that never stopped: no duplicates, no gaps.
TEST_F(DistillCli, AKilledCollectionResumesToExactlyTheUninterruptedRows) {
  const std::string collect = "--data " + work->str("data") + " --num-samples 60000 --val-samples 200 --collect-only --chunk-rows 64";
  const std::string rank_file = work->str("killed/transitions/train/rank00000.h5");
  Job job = spawn(crsm_train(distill_args("killed", collect)), work->str("killed.log"));
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::error_code ec;
  while (Clock::now() < deadline && !(fs::exists(rank_file, ec) && fs::file_size(rank_file, ec) > (1u << 20)))
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  job.kill();
  const auto described = python("describe " + rank_file);  // h5py opens what the killed writer left
  ASSERT_EQ(described.status, 0) << described.output;
  const int64_t kept = nlohmann::json::parse(described.output)[0]["datasets"]["pos"]["shape"][0];
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, 60000) << "the collection finished before it was killed";

  // Continued with another compression: the kept rows are rewritten with it, and it says so.
  const auto resumed = distill(1, "killed", collect + " --compression gzip");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("kept from an earlier run"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find(rank_file + " was written with --compression none: its " + std::to_string(kept) +
                                " rows are rewritten with gzip as the collection continues"),
            std::string::npos)
      << resumed.output;
  const auto clean = distill(1, "clean", collect);
  ASSERT_EQ(clean.status, 0) << clean.output;
  const auto same = python("same " + master("killed") + " " + master("clean") + " 0");
  EXPECT_EQ(same.status, 0) << same.output;
  EXPECT_NE(same.output.find("same: 60000 rows"), std::string::npos) << same.output;
  const auto consistent = python("consistent " + master("killed"));
  EXPECT_EQ(consistent.status, 0) << consistent.output;
}

TEST_F(DistillCli, TrainsAssemblesGeneratesAndChecksTheDynamics) {
  const auto r = distill(2, "trained", "--data " + work->str("data") + " --num-samples 2000 --epochs 2 --batch-size 128");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("distill: done: validation R²"), std::string::npos) << r.output;
  const auto meta = nlohmann::json::parse(read_file(work->path() / "trained" / "dynamics.json"));
  for (const char* key : {"model_path", "output_path", "num_samples", "epochs", "lr", "d_model", "vocab_size", "num_layers",
                          "best_val_loss", "r2"})
    EXPECT_TRUE(meta.contains(key)) << key;
  EXPECT_EQ(meta["num_samples"], 2000);
  EXPECT_EQ(meta["num_layers"], 2);
  const auto val = metrics_of(work->path() / "trained", "val");
  ASSERT_EQ(val.size(), 2u);  // one validation per epoch
  EXPECT_EQ(val[0]["r2"].size(), 2u);
  EXPECT_TRUE(val[0].contains("mse") && val[0].contains("mae") && val[0].contains("avg_r2"));

  const auto a = run_command(crsm_train("assemble --backbone " + work->str("backbone") + " --dynamics " +
                                        work->str("trained") + " --output " + work->str("full")));
  ASSERT_EQ(a.status, 0) << a.output;
  const auto g = run_command(crsm_train("generate --model " + work->str("full") + " --prompt ROMEO: --max-length 20"));
  ASSERT_EQ(g.status, 0) << g.output;

  // Deliberative generation in every mode (SPEC §9): async with the dynamics, sync
  // (deterministic, every token planned), exact steps, and a backbone without dynamics.
  const std::string deliberate = "generate --prompt ROMEO: --max-length 12 --simulations 8 --deliberate --stats ";
  const std::regex all_planned("deliberation: (\\d+) tokens, \\1 chosen by the planner; (\\d+) injections applied");
  const auto async = run_command(crsm_train(deliberate + "--model " + work->str("full")));
  ASSERT_EQ(async.status, 0) << async.output;
  EXPECT_NE(async.output.find("simulations/s"), std::string::npos) << async.output;
  const auto sync = run_command(crsm_train(deliberate + "--model " + work->str("full") + " --sync --seed 4"));
  ASSERT_EQ(sync.status, 0) << sync.output;
  EXPECT_TRUE(std::regex_search(sync.output, all_planned)) << sync.output;
  // --stats ends with the root's children of every search that chose a token: 8
  // simulations spread over them.
  std::smatch planned;
  ASSERT_TRUE(std::regex_search(sync.output, planned, all_planned));
  const std::regex root_line("\n  token (\\d+) [^\\n]*");
  int lines = 0;
  for (auto it = std::sregex_iterator(sync.output.begin(), sync.output.end(), root_line); it != std::sregex_iterator();
       ++it, ++lines) {
    const std::string line = it->str();
    EXPECT_EQ(std::stoi((*it)[1]), lines) << line;
    int visits = 0;
    const std::regex n(" n=(\\d+) ");
    for (auto v = std::sregex_iterator(line.begin(), line.end(), n); v != std::sregex_iterator(); ++v) visits += std::stoi((*v)[1]);
    EXPECT_EQ(visits, 8) << line;
  }
  EXPECT_EQ(lines, std::stoi(planned[1])) << sync.output;
  const auto by_value = run_command(crsm_train(deliberate + "--model " + work->str("full") + " --sync --root-choice value"));
  ASSERT_EQ(by_value.status, 0) << by_value.output;
  EXPECT_TRUE(std::regex_search(by_value.output, all_planned)) << by_value.output;
  const auto again = run_command(crsm_train(deliberate + "--model " + work->str("full") + " --sync --seed 4"));
  const auto text_of = [](const std::string& out) { return out.substr(0, out.find("deliberation:")); };
  EXPECT_EQ(text_of(again.output), text_of(sync.output));
  const auto exact = run_command(crsm_train(deliberate + "--model " + work->str("full") + " --sync --no-dynamics"));
  ASSERT_EQ(exact.status, 0) << exact.output;
  EXPECT_TRUE(std::regex_search(exact.output, all_planned)) << exact.output;
  const auto bare = run_command(crsm_train(deliberate + "--model " + work->str("backbone") + " --sync"));
  ASSERT_EQ(bare.status, 0) << bare.output;
  EXPECT_NE(bare.output.find("has no dynamics model (assemble one, SPEC §8): planning with exact backbone steps"),
            std::string::npos) << bare.output;
  const auto c = run_command(crsm_train("check-dynamics --model " + work->str("full") + " --data " + work->str("data") +
                                        " --samples 300 --json"));
  ASSERT_EQ(c.status, 0) << c.output;
  const auto report = nlohmann::json::parse(c.output);
  EXPECT_EQ(report["rows"], 300);
  EXPECT_EQ(report["r2"].size(), 2u);
  EXPECT_TRUE(report["verdict"].is_string());
  ASSERT_EQ(report["rollouts"].size(), 4u);
  EXPECT_EQ(report["rollouts"][3]["k"], 8);
  const auto text = run_command(crsm_train("check-dynamics --model " + work->str("full") + " --data " + work->str("data") +
                                           " --samples 300"));
  EXPECT_NE(text.output.find("Average MSE:"), std::string::npos) << text.output;
}

// The shared loop's exact resume, for dynamics training: a run continued from its step-4
// checkpoint ends bit-identical to the run that never stopped.
TEST_F(DistillCli, DynamicsTrainingResumesExactly) {
  const auto c = distill(1, "source", "--data " + work->str("data") + " --num-samples 2000 --collect-only");
  ASSERT_EQ(c.status, 0) << c.output;
  const std::string args = "--transitions " + work->str("source/transitions") +
                           " --max-steps 8 --save-every 4 --keep-last 0 --batch-size 64 --log-every 3";
  const auto whole = distill(1, "whole", args);
  ASSERT_EQ(whole.status, 0) << whole.output;
  fs::copy(work->path() / "whole", work->path() / "cut", fs::copy_options::recursive);
  fs::remove_all(work->path() / "cut" / "checkpoints" / "step_00000008");
  write_file(work->path() / "cut" / "checkpoints" / "latest", "step_00000004\n");
  fs::remove(work->path() / "cut" / "dynamics.safetensors");
  const auto resumed = distill(1, "cut", args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resume: continuing from"), std::string::npos) << resumed.output;
  const auto a = crsm::model::load_tensor_file(work->str("whole/dynamics.safetensors"));
  const auto b = crsm::model::load_tensor_file(work->str("cut/dynamics.safetensors"));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
  const auto losses = [&](const std::string& run) {
    std::vector<double> out;
    for (const auto& m : metrics_of(work->path() / run, "train")) out.push_back(m["loss"].get<double>());
    return out;
  };
  EXPECT_EQ(losses("whole"), losses("cut"));
}

}  // namespace
