// End-to-end data-parallel training with real ranks: `mpirun -np W crsm_train train`,
// compared against the single-process run on the same global batch.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <thread>
#include <tuple>

#include "../cli/cli_test_support.h"
#include "model/tensor_file.h"

namespace {

using namespace crsm::testing;
using Clock = std::chrono::steady_clock;


// `text` appears in `output` exactly once (under mpirun: said by one rank, not by each).
void expect_said_once(const std::string& output, const std::string& text) {
  const auto at = output.find(text);
  EXPECT_NE(at, std::string::npos) << "never said: " << text << "\n" << output;
  if (at != std::string::npos)
    EXPECT_EQ(output.find(text, at + 1), std::string::npos) << "said more than once: " << text << "\n" << output;
}

class DistTrain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new TempDir("dist_train");
    const auto r = prepare_shakespeare_prefix(*work, 150000);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete work; }

  static std::string train_args(const std::string& run, const std::string& extra, int threads = 1) {
    return "train --config " + source_path("configs/tiny.json") + " --data " + work->str("data") +
           " --checkpoint-dir " + work->str(run) + " --threads " + std::to_string(threads) + " --no-value-loss " + extra;
  }
  // World 1 runs without a launcher (the local backend), as a user runs it by hand.
  static CommandResult train(int world, const std::string& run, const std::string& extra, int threads = 1) {
    const std::string launcher = world == 1 ? "" : mpirun(world);
    return run_command("timeout 120 " + launcher + crsm_train(train_args(run, extra, threads)));
  }
  static std::vector<double> losses(const std::string& run) {
    std::vector<double> out;
    for (const auto& r : metrics_of(work->path() / run, "train")) out.push_back(r["loss"].get<double>());
    return out;
  }
  // A checkpoint's model; a zero stage 3 checkpoint has none in one file, so it is
  // exported (assembled from the rank files) as a user would.
  static crsm::model::NamedTensors weights(const std::string& checkpoint) {
    const auto whole = work->path() / checkpoint / "model.safetensors";
    if (fs::exists(whole)) return crsm::model::load_tensor_file(whole.string());
    const auto exported = work->str(std::regex_replace(checkpoint, std::regex("/"), "_") + ".safetensors");
    const auto r = run_command(crsm_train("export --force --checkpoint " + work->str(checkpoint) + " --output " + exported));
    EXPECT_EQ(r.status, 0) << r.output;
    return crsm::model::load_tensor_file(exported);
  }
  // Resumes `run` on 2 ranks for `more` steps past its latest checkpoint, which must be at
  // least at `min_step`, and checks it carried on from there.
  static void expect_resumes_from_latest(const std::string& run, int64_t min_step, int64_t more) {
    const std::string name = read_file(work->path() / run / "checkpoints" / "latest");
    const int64_t step = std::stoll(name.substr(name.find('_') + 1));
    EXPECT_GE(step, min_step);
    const auto resumed = train(2, run, "--max-steps " + std::to_string(step + more) +
                                           " --log-every 1 --eval-every 0 --eval-batches 2 --resume auto");
    ASSERT_EQ(resumed.status, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("at step " + std::to_string(step)), std::string::npos) << resumed.output;
  }
  static double max_weight_difference(const std::string& a, const std::string& b) {
    const auto wa = weights(a), wb = weights(b);
    EXPECT_EQ(wa.size(), wb.size());
    double worst = 0;
    for (size_t i = 0; i < wa.size() && i < wb.size(); ++i) {
      EXPECT_EQ(wa[i].first, wb[i].first);
      worst = std::max(worst, (wa[i].second - wb[i].second).abs().max().item<double>());
    }
    return worst;
  }

  static TempDir* work;
};
TempDir* DistTrain::work = nullptr;

void expect_close(const std::vector<double>& a, const std::vector<double>& b, double tol,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol) << what << " at record " << i;
}

TEST_F(DistTrain, DataParallelMatchesOneProcessForEveryZeroStage) {
  const std::string steps = "--max-steps 5 --log-every 1 --eval-every 0 --eval-batches 2 ";
  const auto base = train(1, "single", steps);
  ASSERT_EQ(base.status, 0) << base.output;
  for (int zero : {0, 1, 2, 3})
    for (int world : {2, 3}) {
      const std::string run = "w" + std::to_string(world) + "z" + std::to_string(zero);
      const auto r = train(world, run, steps + "--zero-stage " + std::to_string(zero));
      ASSERT_EQ(r.status, 0) << r.output;
      EXPECT_NE(r.output.find(std::to_string(world) + " ranks (mpi, zero stage " + std::to_string(zero)),
                std::string::npos) << r.output;
      expect_close(losses(run), losses("single"), 1e-5, run);
      EXPECT_LE(max_weight_difference(run + "/checkpoints/step_00000005", "single/checkpoints/step_00000005"),
                1e-5) << run;
    }
}

TEST_F(DistTrain, GradientAccumulationAcrossRanksMatchesOneProcess) {
  const std::string steps = "--max-steps 4 --log-every 1 --eval-every 0 --eval-batches 2 ";
  ASSERT_EQ(train(1, "acc_single", steps).status, 0);
  for (int zero : {0, 2, 3}) {
    const std::string run = "acc_z" + std::to_string(zero);
    const auto r = train(2, run, steps + "--grad-accum 2 --zero-stage " + std::to_string(zero));
    ASSERT_EQ(r.status, 0) << r.output;
    expect_close(losses(run), losses("acc_single"), 1e-5, run);
  }
}

// Ranks whose two threads each take a share of every micro-batch (3 rows: shares of 1
// and 2) hand their gradients to DataParallel's hooks once the shares are summed; at
// stages 1 and 2 the hooks copy them into the reduced buffers, so a missed hook would
// lose the gradients.
TEST_F(DistTrain, RanksSharingTheirRowsOverThreadsMatchOneProcess) {
  const std::string steps = "--max-steps 4 --log-every 1 --eval-every 0 --eval-batches 2 ";
  ASSERT_EQ(train(1, "shares_single", steps).status, 0);
  for (int zero : {1, 2}) {
    const std::string run = "shares_z" + std::to_string(zero);
    const auto r = train(2, run, steps + "--grad-accum 2 --zero-stage " + std::to_string(zero), 2);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("each running forward and backward of its own share"), std::string::npos) << r.output;
    expect_close(losses(run), losses("shares_single"), 1e-5, run);
  }
}

// Stage 4 trains the value heads too: a different set of parameters in the buckets.
TEST_F(DistTrain, StageFourFromAStageOneCheckpointMatchesOneProcess) {
  ASSERT_EQ(train(1, "s1", "--max-steps 3 --eval-every 0 --eval-batches 2").status, 0);
  const std::string from = " --resume " + work->str("s1") + " --max-steps 4 --log-every 1 --eval-every 0 --eval-batches 2";
  const auto stage4 = [&](int world, const std::string& run, const std::string& extra) {
    const std::string launcher = world == 1 ? "" : mpirun(world);
    const std::string args = "train --config " + source_path("configs/tiny.json") + " --data " +
                             work->str("data") + " --checkpoint-dir " + work->str(run) + " --threads 1" +
                             from + extra;
    return run_command("timeout 120 " + launcher + crsm_train(args));
  };
  const auto single = stage4(1, "s4_single", "");
  ASSERT_EQ(single.status, 0) << single.output;
  const auto sharded = stage4(2, "s4_w2", " --zero-stage 2");
  ASSERT_EQ(sharded.status, 0) << sharded.output;
  EXPECT_NE(sharded.output.find("starting stage 4"), std::string::npos) << sharded.output;
  std::vector<double> a, b;
  for (const auto& r : metrics_of(work->path() / "s4_single", "train")) a.push_back(r["value_loss"].get<double>());
  for (const auto& r : metrics_of(work->path() / "s4_w2", "train")) b.push_back(r["value_loss"].get<double>());
  expect_close(b, a, 1e-5, "value loss");
  expect_close(losses("s4_w2"), losses("s4_single"), 1e-5, "lm loss");
}

// Stage 3 with tied embeddings (the LM head borrows the embedding's unit) and the value
// heads training (their own unit) on 3 ranks, and with activation checkpointing on 2.
TEST_F(DistTrain, StageThreeWithTiedEmbeddingsAndValueHeadsMatchesOneProcess) {
  auto config = nlohmann::json::parse(read_file(source_path("configs/tiny.json")));
  config["tie_embeddings"] = true;
  write_file(work->path() / "tied.json", config.dump());
  const auto run = [&](int world, const std::string& dir, const std::string& extra) {
    const std::string launcher = world == 1 ? "" : mpirun(world);
    return run_command("timeout 120 " + launcher +
                       crsm_train("train --config " + work->str("tied.json") + " --data " + work->str("data") +
                                  " --checkpoint-dir " + work->str(dir) +
                                  " --threads 1 --max-steps 4 --log-every 1 --eval-every 0 --eval-batches 2" + extra));
  };
  const auto single = run(1, "tied_single", "");
  ASSERT_EQ(single.status, 0) << single.output;
  const auto sharded = run(3, "tied_w3z3", " --zero-stage 3");
  ASSERT_EQ(sharded.status, 0) << sharded.output;
  std::vector<double> a, b;
  for (const auto& r : metrics_of(work->path() / "tied_single", "train")) a.push_back(r["value_loss"].get<double>());
  for (const auto& r : metrics_of(work->path() / "tied_w3z3", "train")) b.push_back(r["value_loss"].get<double>());
  expect_close(b, a, 1e-5, "value loss");
  expect_close(losses("tied_w3z3"), losses("tied_single"), 1e-5, "lm loss");
  EXPECT_LE(max_weight_difference("tied_w3z3/checkpoints/step_00000004", "tied_single/checkpoints/step_00000004"), 1e-5);
  // A block recomputed in backward runs inside its unit's backward gather.
  const auto recomputed = run(2, "tied_w2z3_ckpt", " --zero-stage 3 --activation-checkpointing");
  ASSERT_EQ(recomputed.status, 0) << recomputed.output;
  expect_close(losses("tied_w2z3_ckpt"), losses("tied_single"), 1e-5, "lm loss, activation checkpointing");
}

// 375 validation windows of 40 tokens split 187 / 188 over two ranks, one row per pass:
// at stage 3 every forward gathers, so the rank with fewer rows must still join the
// other's last pass.
TEST_F(DistTrain, StageThreeValidatesOverUnevenShares) {
  const std::string steps = "--max-steps 2 --log-every 1 --eval-every 1 --eval-batches 0 --seq-len 40 --batch-size 2 ";
  const auto single = train(1, "uneven_single", steps);
  ASSERT_EQ(single.status, 0) << single.output;
  const auto sharded = train(2, "uneven_w2z3", steps + "--zero-stage 3 --collective-timeout 20");
  ASSERT_EQ(sharded.status, 0) << sharded.output;
  std::vector<double> a, b;
  for (const auto& r : metrics_of(work->path() / "uneven_single", "val")) a.push_back(r["loss"].get<double>());
  for (const auto& r : metrics_of(work->path() / "uneven_w2z3", "val")) b.push_back(r["loss"].get<double>());
  ASSERT_EQ(a.size(), 2u);
  expect_close(b, a, 1e-5, "validation loss");
}

// Prefetching changes when a unit arrives, never what arrives (in fp32 and under bf16
// autocast).
TEST_F(DistTrain, StageThreePrefetchOnAndOffGiveIdenticalResults) {
  for (const std::string precision : {"fp32", "bf16"}) {
    const std::string steps = "--max-steps 4 --log-every 1 --eval-every 0 --eval-batches 2 --zero-stage 3 --precision " +
                              precision + " ";
    const auto on = train(2, "pf_on_" + precision, steps);
    ASSERT_EQ(on.status, 0) << on.output;
    const auto off = train(2, "pf_off_" + precision, steps + "--no-prefetch");
    ASSERT_EQ(off.status, 0) << off.output;
    EXPECT_EQ(losses("pf_on_" + precision), losses("pf_off_" + precision)) << precision;
    EXPECT_EQ(max_weight_difference("pf_on_" + precision + "/checkpoints/step_00000004",
                                    "pf_off_" + precision + "/checkpoints/step_00000004"),
              0.0)
        << precision;
  }
}

// A stage-3 checkpoint holds no model.safetensors, only each rank's pieces; it resumes at
// the same world exactly, and re-partitioned at other worlds and stages; a stage-1
// checkpoint resumes at stage 3.
TEST_F(DistTrain, StageThreeCheckpointsResumeAtAnyWorldAndStage) {
  const std::string steps = "--max-steps 8 --log-every 1 --save-every 4 --keep-last 0 --eval-every 0 --eval-batches 2 ";
  ASSERT_EQ(train(2, "z3_straight", steps + "--zero-stage 3").status, 0);
  ASSERT_EQ(train(2, "z1_straight", steps + "--zero-stage 1").status, 0);
  EXPECT_FALSE(fs::exists(work->path() / "z3_straight/checkpoints/step_00000004/model.safetensors"));
  // Recurrent mode reads the assembled model.
  const auto generated = run_command(crsm_train("generate --model " + work->str("z3_straight") + " --prompt ROMEO"));
  EXPECT_EQ(generated.status, 0) << generated.output;
  const auto reference = losses("z3_straight");
  for (const auto& [from, world, zero] : std::vector<std::tuple<std::string, int, int>>{
           {"z3_straight", 2, 3}, {"z3_straight", 3, 3}, {"z3_straight", 1, 0}, {"z3_straight", 2, 1},
           {"z1_straight", 3, 3}}) {
    const std::string run = "from_" + from + "_w" + std::to_string(world) + "z" + std::to_string(zero);
    fs::create_directories(work->path() / run / "checkpoints");
    fs::copy(work->path() / from / "checkpoints" / "step_00000004", work->path() / run / "checkpoints" / "step_00000004",
             fs::copy_options::recursive);
    const auto r = train(world, run, steps + "--resume auto --zero-stage " + std::to_string(zero));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("at step 4"), std::string::npos) << r.output;
    const auto got = losses(run);
    ASSERT_EQ(got.size(), 4u) << run;
    for (size_t i = 0; i < 4; ++i) {
      if (from == "z3_straight" && world == 2 && zero == 3)
        EXPECT_EQ(got[i], reference[4 + i]) << run << " step " << 5 + i;  // the same run, resumed
      else
        EXPECT_NEAR(got[i], reference[4 + i], 1e-5) << run << " step " << 5 + i;
    }
  }
}

// Each rank's parameters and gradients after step 1, as the run reports them (MiB).
std::vector<double> held_params_and_grads(const std::string& output) {
  std::vector<double> out;
  const std::regex line("memory: rank \\d+ holds params ([0-9.]+) MiB \\| grads ([0-9.]+) MiB");
  for (std::sregex_iterator it(output.begin(), output.end(), line), end; it != end; ++it)
    out.push_back(std::stod((*it)[1]) + std::stod((*it)[2]));
  return out;
}

// Stage 3 holds a shard of the parameters and the units in flight: less than stage 2's
// whole copy. The step's traffic is the analytic volume (two gathers and a
// reduce-scatter of the parameters).
TEST_F(DistTrain, StageThreeHoldsLessThanStageTwoAndSendsTheAnalyticVolume) {
  for (int world : {2, 3}) {
    const std::string w = std::to_string(world);
    const auto z2 = train(world, "m_w" + w + "z2", "--max-steps 1 --eval-every 0 --eval-batches 2 --zero-stage 2");
    const auto z3 = train(world, "m_w" + w + "z3", "--max-steps 1 --eval-every 0 --eval-batches 2 --zero-stage 3");
    ASSERT_EQ(z2.status, 0) << z2.output;
    ASSERT_EQ(z3.status, 0) << z3.output;
    const auto a = held_params_and_grads(z2.output), b = held_params_and_grads(z3.output);
    ASSERT_EQ(a.size(), static_cast<size_t>(world)) << z2.output;
    ASSERT_EQ(b.size(), static_cast<size_t>(world)) << z3.output;
    for (int r = 0; r < world; ++r) EXPECT_LT(b[r], a[r]) << "rank " << r << " of " << world << "\n" << z3.output;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(z3.output, m, std::regex("sent ([0-9.]+) MiB .*analytic ([0-9.]+) MiB"))) << z3.output;
    EXPECT_NEAR(std::stod(m[1]), std::stod(m[2]), 0.03 * std::stod(m[2])) << z3.output;
  }
}

TEST_F(DistTrain, ResumeAtTheSameWorldReproducesTheLossesExactly) {
  const std::string steps = "--max-steps 8 --log-every 1 --save-every 4 --keep-last 0 --eval-every 0 --eval-batches 2 --zero-stage 1 ";
  const auto straight = train(2, "rs_straight", steps);
  ASSERT_EQ(straight.status, 0) << straight.output;
  fs::create_directories(work->path() / "rs_resumed" / "checkpoints");
  fs::copy(work->path() / "rs_straight" / "checkpoints" / "step_00000004",
           work->path() / "rs_resumed" / "checkpoints" / "step_00000004", fs::copy_options::recursive);
  const auto resumed = train(2, "rs_resumed", steps + "--resume auto");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("at step 4"), std::string::npos) << resumed.output;
  const auto a = losses("rs_straight"), b = losses("rs_resumed");
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(a[4 + i], b[i]) << "step " << 5 + i;
}

TEST_F(DistTrain, CheckpointFromTwoRanksResumesAtOneAndThreeRanks) {
  const std::string steps = "--max-steps 8 --log-every 1 --save-every 4 --keep-last 0 --eval-every 0 --eval-batches 2 ";
  const auto straight = train(2, "rp_straight", steps + "--zero-stage 1");
  ASSERT_EQ(straight.status, 0) << straight.output;
  const auto reference = losses("rp_straight");
  for (const auto& [world, zero] : std::vector<std::pair<int, int>>{{1, 0}, {3, 2}, {3, 1}}) {
    const std::string run = "rp_w" + std::to_string(world) + "z" + std::to_string(zero);
    fs::create_directories(work->path() / run / "checkpoints");
    fs::copy(work->path() / "rp_straight" / "checkpoints" / "step_00000004",
             work->path() / run / "checkpoints" / "step_00000004", fs::copy_options::recursive);
    const auto r = train(world, run, steps + "--resume auto --zero-stage " + std::to_string(zero));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("re-partitioned"), std::string::npos) << r.output;
    const auto got = losses(run);
    ASSERT_EQ(got.size(), 4u) << run;
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], reference[4 + i], 1e-5) << run << " step " << 5 + i;
  }
}

TEST_F(DistTrain, DamagedShardsAreSkippedByAutoAndRefusedByPath) {
  const std::string steps = "--log-every 4 --save-every 4 --keep-last 0 --eval-every 0 --eval-batches 2 --zero-stage 2 ";
  ASSERT_EQ(train(2, "dmg_source", steps + "--max-steps 8").status, 0);
  const auto newest = [&](const std::string& run) {
    return work->path() / run / "checkpoints" / "step_00000008" / "rank00001.safetensors";
  };
  for (const std::string damage : {"truncate", "flip"}) {
    const std::string run = "dmg_" + damage;
    fs::copy(work->path() / "dmg_source", work->path() / run, fs::copy_options::recursive);
    fs::remove(work->path() / run / "metrics.jsonl");
    if (damage == "truncate") {
      fs::resize_file(newest(run), fs::file_size(newest(run)) / 2);
    } else {
      std::string bytes = read_file(newest(run));
      bytes[bytes.size() - 5] ^= 0x01;
      write_file(newest(run), bytes);
    }
    const auto explicit_path = train(2, run, steps + "--max-steps 10 --resume " + work->str(run) +
                                                 "/checkpoints/step_00000008");
    EXPECT_NE(explicit_path.status, 0) << explicit_path.output;
    EXPECT_NE(explicit_path.output.find("rank00001.safetensors"), std::string::npos) << explicit_path.output;
    EXPECT_NE(explicit_path.output.find("damaged"), std::string::npos) << explicit_path.output;

    const auto fallback = train(2, run, steps + "--max-steps 10 --resume auto");
    ASSERT_EQ(fallback.status, 0) << fallback.output;
    EXPECT_NE(fallback.output.find("skipping damaged checkpoint"), std::string::npos) << fallback.output;
    EXPECT_NE(fallback.output.find("step_00000004 at step 4"), std::string::npos) << fallback.output;
  }
}



// mpirun's children: the ranks of a job started by spawn().
std::vector<pid_t> ranks_of(const Job& job) {
  const auto r = run_command("pgrep -P " + std::to_string(job.pid));
  std::stringstream pids(r.output);
  std::vector<pid_t> found;
  for (pid_t p; pids >> p;) found.push_back(p);
  return found;
}

// SIGUSR1 to mpirun (it forwards it), and SIGTERM to the ranks, as Slurm delivers it to a
// job step's tasks. (SIGTERM to mpirun itself is not forwarded: mpirun kills the ranks a
// second later, which launch/crsm_launch.sh avoids by turning it into SIGUSR1.) The
// SIGTERM run shards its parameters (zero stage 3), and resumes at stage 0.
TEST_F(DistTrain, PreemptionSignalCheckpointsAndTheRunResumesFromIt) {
  for (int sig : {SIGUSR1, SIGTERM}) {
    const std::string run = sig == SIGUSR1 ? "pre_usr1" : "pre_term";
    const std::string zero = sig == SIGUSR1 ? "" : " --zero-stage 3";
    const auto job = spawn(mpirun(2) + crsm_train(train_args(run, "--max-steps 100000 --log-every 20 --eval-every 0 --eval-batches 2" + zero)),
                           work->str(run + ".log"));
    ASSERT_TRUE(wait_for_text(job, "step     20/", 60)) << read_file(job.log);
    if (sig == SIGUSR1) {
      ::kill(job.pid, sig);
    } else {
      const auto ranks = ranks_of(job);
      ASSERT_EQ(ranks.size(), 2u);
      for (pid_t p : ranks) ::kill(p, sig);
    }
    const int status = wait_for(job, 60);
    const std::string log = read_file(job.log);
    EXPECT_EQ(status, 4) << log;
    EXPECT_NE(log.find("train: preempted"), std::string::npos) << log;
    expect_resumes_from_latest(run, 20, 3);
  }
}

// The rank a process of an mpirun job is (Open MPI tells it in the environment).
int world_rank_of(pid_t pid) {
  const std::string env = read_file("/proc/" + std::to_string(pid) + "/environ");
  const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
  const auto at = env.find(key);
  return at == std::string::npos ? -1 : std::stoi(env.substr(at + key.size()));
}

// A signal during start-up, while rank 0 prepares a text corpus for a resumed run, ends
// the job at a safe point with status 4 before any step, naming the signal; nothing is
// written and the previous checkpoint stands. Signalled, rank 0 stops preparing and
// leaves no data behind; rank 1 signalled alone lets it finish and stops after.
TEST_F(DistTrain, APreemptionSignalDuringStartUpEndsTheRunBeforeAnyStep) {
  const std::string shakespeare = read_file(source_path("data/tinyshakespeare.txt"));
  {
    std::ofstream big(work->path() / "big.txt", std::ios::binary);
    for (int i = 0; i < 30; ++i) big << shakespeare;  // 33 MB: about a second of preparation
  }
  for (const int signalled : {0, 1}) {
    const std::string run = "startup" + std::to_string(signalled);
    const auto first = train(2, run, "--max-steps 2 --eval-every 0 --eval-batches 2");
    ASSERT_EQ(first.status, 0) << first.output;
    const std::string resume = train_args(run, "--max-steps 4 --eval-every 0 --eval-batches 2 --resume auto");
    const auto job = spawn(mpirun(2) + crsm_train(std::regex_replace(resume, std::regex("--data \\S+"),
                                                                     "--data " + work->str("big.txt"))),
                           work->str(run + ".log"));
    // Wait for rank 0's staging directory: the preparation has begun.
    const auto staging = [&] {
      for (const auto& e : fs::directory_iterator(work->path() / run))
        if (e.path().filename().string().rfind(".data.tmp.", 0) == 0) return true;
      return false;
    };
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline && !staging()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ASSERT_TRUE(staging()) << read_file(job.log);
    pid_t target = -1;
    for (pid_t p : ranks_of(job))
      if (world_rank_of(p) == signalled) target = p;
    ASSERT_GT(target, 0) << read_file(job.log);
    ::kill(target, SIGUSR1);
    const int status = wait_for(job, 120);
    const std::string log = read_file(job.log);
    EXPECT_EQ(status, 4) << log;
    expect_said_once(log, "train: preempted by SIGUSR1 during start-up, before taking a step");
    EXPECT_EQ(read_file(work->path() / run / "checkpoints" / "latest"), "step_00000002\n");
    EXPECT_FALSE(fs::exists(work->path() / run / "checkpoints" / "step_00000003"));
    EXPECT_EQ(fs::exists(work->path() / run / "data"), signalled == 1) << "rank 0 stops preparing only when signalled";
    EXPECT_FALSE(staging()) << "the staging directory is removed";
  }
}

TEST_F(DistTrain, KilledRankEndsTheJobAndTheLastCheckpointResumes) {
  const std::string run = "fault";
  const auto job = spawn(mpirun(2) + crsm_train(train_args(run, "--max-steps 100000 --log-every 20 --save-every 20 --eval-every 0 --eval-batches 2")),
                         work->str("fault.log"));
  ASSERT_TRUE(wait_for_text(job, "step     60/", 60)) << read_file(job.log);
  const auto found = ranks_of(job);
  ASSERT_EQ(found.size(), 2u);
  const auto killed_at = Clock::now();
  ::kill(found.back(), SIGKILL);
  const int status = wait_for(job, 60);
  const double seconds = std::chrono::duration<double>(Clock::now() - killed_at).count();
  EXPECT_NE(status, 0) << read_file(job.log);
  EXPECT_NE(status, -1) << "the job was still running 60 s after a rank died";
  EXPECT_LT(seconds, 60.0);
  expect_resumes_from_latest(run, 20, 2);
}

// A rank that stops without dying (SIGSTOP here; a hung file system in life) must not
// hold the others forever: they give up after --collective-timeout, naming the
// collective, and the job ends. Small buckets leave many reductions pending at the
// stop; once one has timed out the others must not each wait out their own.
// At zero stage 3, so that the waits include the parameters' gathers.
TEST_F(DistTrain, AStoppedRankEndsTheJobAfterTheCollectiveTimeout) {
  const auto job = spawn(mpirun(2) + crsm_train(train_args("stopped", "--max-steps 100000 --log-every 20 --eval-every 0 "
                                                                       "--eval-batches 2 --collective-timeout 5 --bucket-mb 0.01 "
                                                                       "--zero-stage 3")),
                         work->str("stopped.log"));
  ASSERT_TRUE(wait_for_text(job, "step     20/", 60)) << read_file(job.log);
  const auto found = ranks_of(job);
  ASSERT_EQ(found.size(), 2u);
  struct Release {
    pid_t pid;
    ~Release() { ::kill(pid, SIGKILL); }  // a stopped process takes SIGKILL too
  } release{found.back()};
  const auto stopped_at = Clock::now();
  ::kill(found.back(), SIGSTOP);
  const int status = wait_for(job, 60);
  const double seconds = std::chrono::duration<double>(Clock::now() - stopped_at).count();
  const std::string log = read_file(job.log);
  EXPECT_NE(status, -1) << "the job was still running 60 s after a rank stopped:\n" << log;
  EXPECT_EQ(status, 5) << log;
  EXPECT_GE(seconds, 4.0) << log;
  EXPECT_LT(seconds, 30.0) << log;
  EXPECT_NE(log.find("not complete after 5 s (--collective-timeout)"), std::string::npos) << log;
}

// Bytes a directory tree takes on its file system (du), for sizing the small one below.
int64_t disk_usage(const fs::path& path) {
  const auto r = run_command("du -sk " + path.string());
  return std::stoll(r.output) * 1024;
}

// A save that runs out of disk: the job fails naming the file, the previous checkpoint
// stays intact, and once there is room again the run resumes from it. The room given is
// enough only if the failed save's partial directory is removed first. Needs a small
// file system of its own: a tmpfs, which root can mount (CI and this machine).
TEST_F(DistTrain, AFullDiskFailsTheSaveAndTheRunResumesOnceThereIsRoom) {
  const fs::path mount_point = work->path() / "small_fs";
  fs::create_directories(mount_point);
  if (run_command("mount -t tmpfs -o size=900k tmpfs " + mount_point.string()).status != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  struct Unmount {
    std::string at;
    ~Unmount() { run_command("umount " + at); }
  } unmount{mount_point.string()};
  const std::string run = "small_fs/run";
  const auto full = train(2, run, "--max-steps 20 --save-every 5 --log-every 5 --eval-every 0 --eval-batches 2");
  EXPECT_NE(full.status, 0) << full.output;
  EXPECT_NE(full.output.find("No space left on device"), std::string::npos) << full.output;
  const fs::path checkpoints = mount_point / "run" / "checkpoints";
  EXPECT_EQ(read_file(checkpoints / "latest"), "step_00000005\n");
  ASSERT_TRUE(fs::exists(checkpoints / "step_00000010.tmp")) << full.output;

  const int64_t saved = disk_usage(checkpoints / "step_00000005");
  const int64_t partial = disk_usage(checkpoints / "step_00000010.tmp");
  const int64_t room = disk_usage(mount_point) - partial + saved + partial / 4;
  ASSERT_EQ(run_command("mount -o remount,size=" + std::to_string(room / 1024) + "k " + mount_point.string()).status, 0);
  // The resumed run saves at step 8, not 10, so only the start-up cleanup can free the
  // space step_00000010.tmp holds.
  const auto resumed = train(2, run, "--max-steps 8 --save-every 4 --log-every 4 --eval-every 0 --eval-batches 2 --resume auto");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("removed step_00000010.tmp, a save that never completed"), std::string::npos)
      << resumed.output;
  EXPECT_NE(resumed.output.find("step_00000005 at step 5"), std::string::npos) << resumed.output;
  EXPECT_EQ(read_file(checkpoints / "latest"), "step_00000008\n");
  EXPECT_FALSE(fs::exists(checkpoints / "step_00000010.tmp"));
}

TEST_F(DistTrain, AGlobalBatchTheRanksCannotShareIsRefused) {
  const auto r = train(2, "bad_batch", "--max-steps 2 --batch-size 13");
  EXPECT_EQ(r.status, 2) << r.output;
  // Every rank refuses it, so it is said once, by rank 0, and no rank aborts the job.
  const std::string message =
      "crsm_train train: error: --batch-size 13 is the global batch and must divide evenly among the 2 ranks";
  expect_said_once(r.output, message);
  EXPECT_EQ(r.output.find("[rank 0] " + message), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("MPI_ABORT"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(work->path() / "bad_batch" / "checkpoints" / "latest"));
}

TEST_F(DistTrain, HelpUnderMpirunIsPrintedOnce) {
  const auto r = run_command("timeout 120 " + mpirun(2) + crsm_train("train --help"));
  EXPECT_EQ(r.status, 0) << r.output;
  expect_said_once(r.output, "--zero-stage");
}

TEST_F(DistTrain, TopLevelUsageUnderMpirunIsPrintedOnce) {
  const auto r = run_command("timeout 120 " + mpirun(2) + crsm_train("--help"));
  EXPECT_EQ(r.status, 0) << r.output;
  expect_said_once(r.output, "usage: crsm_train COMMAND");
}

// Rank 1 alone gets a bad flag (mpirun's MPMD form gives each rank its own command
// line); rank 0 starts training and waits for it in a collective. The job must end with
// rank 1's message, not hang.
TEST_F(DistTrain, AFailureOnOneRankAloneEndsTheJobWithThatRanksMessage) {
  const auto started = Clock::now();
  const auto r = run_command("timeout 120 " + std::string(CRSM_MPIEXEC) +
                             " --allow-run-as-root --oversubscribe -np 1 " +
                             crsm_train(train_args("one_fails", "--max-steps 20")) + " : -np 1 " +
                             crsm_train(train_args("one_fails", "--max-steps 20 --bogus 1")));
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "the job hung:\n" << r.output;
  EXPECT_LT(seconds, 60) << r.output;
  EXPECT_NE(r.output.find("[rank 1] crsm_train train: unrecognised option '--bogus'"), std::string::npos)
      << r.output;
}

TEST_F(DistTrain, MemoryReportShowsShardedOptimizerState) {
  const auto r0 = train(2, "mem_z0", "--max-steps 1 --eval-every 0 --eval-batches 2 --zero-stage 0");
  const auto r1 = train(2, "mem_z1", "--max-steps 1 --eval-every 0 --eval-batches 2 --zero-stage 1");
  ASSERT_EQ(r0.status, 0) << r0.output;
  ASSERT_EQ(r1.status, 0) << r1.output;
  EXPECT_NE(r0.output.find("memory: rank 1 holds"), std::string::npos) << r0.output;
  // 41,890 parameters less the frozen value heads, two fp32 moments each.
  EXPECT_NE(r0.output.find("optimizer 0.32 MiB"), std::string::npos) << r0.output;
  EXPECT_NE(r1.output.find("optimizer 0.16 MiB"), std::string::npos) << r1.output;
}

}  // namespace
