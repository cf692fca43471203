#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "cli_test_support.h"

namespace {

using namespace crsm::testing;

// One prepared corpus (the first 150 KB of Tiny Shakespeare) shared by the suite.
class CliTrain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new TempDir("cli_train");
    const auto r = prepare_shakespeare_prefix(*work, 150000);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete work; }

  static std::string train_args(const std::string& run, const std::string& extra, int threads = 1) {
    return "train --config " + source_path("configs/tiny.json") + " --data " + work->str("data") +
           " --checkpoint-dir " + work->str(run) + " --threads " + std::to_string(threads) + " " + extra;
  }

  static TempDir* work;
};
TempDir* CliTrain::work = nullptr;

// tokens/s must cover every step of its window: the time per logged window adds up to
// (nearly) the run's wall time, not to one step per window.
TEST_F(CliTrain, TokensPerSecondCoversTheWholeLoggingWindow) {
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_command(crsm_train(train_args(
      "rate", "--no-value-loss --max-steps 200 --log-every 20 --eval-every 0 --eval-batches 1")));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.status, 0) << r.output;
  const auto records = metrics_of(work->path() / "rate", "train");
  ASSERT_EQ(records.size(), 10u);
  const double tokens_per_window = 20 * 12 * 32;  // steps x tiny.json's batch x seq_len
  double measured = 0;
  for (const auto& rec : records) measured += tokens_per_window / rec["tokens_per_s"].get<double>();
  EXPECT_LE(measured, wall);
  EXPECT_GE(measured, 0.3 * wall) << "reported rates imply " << measured << " s of training in a "
                                  << wall << " s run";
}

TEST_F(CliTrain, Bf16AutocastTrainsLikeFloat32) {
  const std::string steps = "--no-value-loss --max-steps 30 --log-every 10 --eval-every 0 --eval-batches 2 ";
  const auto fp32 = run_command(crsm_train(train_args("prec_fp32", steps)));
  const auto bf16 = run_command(crsm_train(train_args("prec_bf16", steps + "--precision bf16")));
  ASSERT_EQ(fp32.status, 0) << fp32.output;
  ASSERT_EQ(bf16.status, 0) << bf16.output;
  EXPECT_NE(bf16.output.find("bf16 autocast"), std::string::npos) << bf16.output;
  const auto a = metrics_of(work->path() / "prec_fp32", "train");
  const auto b = metrics_of(work->path() / "prec_bf16", "train");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_LT(b[2]["loss"].get<double>(), b[0]["loss"].get<double>() - 0.2);
  EXPECT_NEAR(b[2]["loss"].get<double>(), a[2]["loss"].get<double>(), 0.05);
  const auto bad = run_command(crsm_train(train_args("prec_bad", steps + "--precision fp16")));
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("--precision fp16: expected one of fp32, bf16"), std::string::npos) << bad.output;
}

// Recomputing each block in backward changes the memory, not the training: the same
// losses, step for step, with value heads (stage 4's objective) and 2 ranks' worth of rows,
// in fp32 and under bf16 autocast (where the recomputation's casts of the weights once
// outlived the update, and step 2 trained on step 1's weights).
TEST_F(CliTrain, ActivationCheckpointingTrainsTheSameLosses) {
  for (const std::string precision : {"fp32", "bf16"}) {
    const std::string steps = "--max-steps 6 --log-every 2 --eval-every 6 --eval-batches 2 --precision " + precision + " ";
    const std::string plain_run = "ckpt_plain_" + precision, recomputed_run = "ckpt_on_" + precision;
    const auto plain = run_command(crsm_train(train_args(plain_run, steps)));
    const auto recomputed = run_command(crsm_train(train_args(recomputed_run, steps + "--activation-checkpointing")));
    ASSERT_EQ(plain.status, 0) << plain.output;
    ASSERT_EQ(recomputed.status, 0) << recomputed.output;
    EXPECT_NE(recomputed.output.find("activation checkpointing"), std::string::npos) << recomputed.output;
    for (const char* split : {"train", "val"}) {
      const auto a = metrics_of(work->path() / plain_run, split), b = metrics_of(work->path() / recomputed_run, split);
      ASSERT_EQ(a.size(), b.size());
      ASSERT_FALSE(a.empty());
      for (size_t i = 0; i < a.size(); ++i)
        EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-5) << precision << " " << split;
    }
  }
}

// Two threads each running their share of the rows train the losses of the whole
// micro-batch spread op by op (to rounding), with value heads and gradient accumulation,
// and a run resumed from a checkpoint repeats the uninterrupted one exactly.
TEST_F(CliTrain, ThreadsSharingEachMicroBatchTrainTheSameLossesAndResumeExactly) {
  const std::string steps = "--max-steps 8 --log-every 1 --save-every 4 --keep-last 0 --eval-every 8 --eval-batches 2 --grad-accum 2 ";
  const auto shared = run_command(crsm_train(train_args("shares", steps, 2)));
  const auto per_op = run_command(crsm_train(train_args("per_op", steps + "--no-batch-split", 2)));
  ASSERT_EQ(shared.status, 0) << shared.output;
  ASSERT_EQ(per_op.status, 0) << per_op.output;
  EXPECT_NE(shared.output.find("threads: 2 per rank, each running forward and backward of its own share"), std::string::npos)
      << shared.output;
  EXPECT_NE(per_op.output.find("each operation spread over them (--no-batch-split)"), std::string::npos) << per_op.output;
  for (const char* split : {"train", "val"}) {
    const auto a = metrics_of(work->path() / "shares", split), b = metrics_of(work->path() / "per_op", split);
    ASSERT_EQ(a.size(), b.size());
    ASSERT_FALSE(a.empty());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-4) << split << " " << i;
  }

  fs::create_directories(work->path() / "shares_resumed" / "checkpoints");
  fs::copy(work->path() / "shares" / "checkpoints" / "step_00000004",
           work->path() / "shares_resumed" / "checkpoints" / "step_00000004", fs::copy_options::recursive);
  const auto resumed = run_command(crsm_train(train_args("shares_resumed", steps + "--resume auto", 2)));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  const auto a = metrics_of(work->path() / "shares", "train"), b = metrics_of(work->path() / "shares_resumed", "train");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(b[i]["loss"].get<double>(), a[i + 4]["loss"].get<double>()) << "step " << b[i]["step"];
}

TEST_F(CliTrain, ResumedRunReproducesTheUninterruptedLosses) {
  const auto straight = run_command(crsm_train(train_args(
      "straight", "--no-value-loss --max-steps 8 --log-every 1 --save-every 4 --keep-last 0 --eval-every 0")));
  ASSERT_EQ(straight.status, 0) << straight.output;
  // The step-4 checkpoint of the same run is where an interrupted run would resume.
  fs::create_directories(work->path() / "resumed" / "checkpoints");
  fs::copy(work->path() / "straight" / "checkpoints" / "step_00000004",
           work->path() / "resumed" / "checkpoints" / "step_00000004", fs::copy_options::recursive);
  const auto resumed = run_command(crsm_train(train_args(
      "resumed", "--no-value-loss --max-steps 8 --log-every 1 --save-every 4 --keep-last 0 --eval-every 0 --resume auto")));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("continuing from"), std::string::npos) << resumed.output;

  const auto a = metrics_of(work->path() / "straight", "train");
  const auto b = metrics_of(work->path() / "resumed", "train");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(b[i]["step"], a[i + 4]["step"]);
    EXPECT_EQ(b[i]["loss"].get<double>(), a[i + 4]["loss"].get<double>()) << "step " << b[i]["step"];
  }
  EXPECT_LT(a.back()["loss"].get<double>(), a.front()["loss"].get<double>());
}

// Every start of a run appends a line to run_info.jsonl that says what made it: the
// command line, every resolved option (flag-only ones too), the versions, the hosts.
TEST_F(CliTrain, EveryStartRecordsItsCommandOptionsAndVersions) {
  const std::string args = "--no-value-loss --save-every 1 --eval-every 0 --weight-decay 0.05 ";
  ASSERT_EQ(run_command(crsm_train(train_args("provenance", args + "--max-steps 2"))).status, 0);
  const auto resumed = run_command(crsm_train(train_args("provenance", args + "--max-steps 3 --resume auto")));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  std::vector<nlohmann::json> lines;
  std::ifstream in(work->path() / "provenance" / "run_info.jsonl");
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  const auto& first = lines[0];
  EXPECT_EQ(first["command"], "train");
  EXPECT_EQ(first["options"]["weight-decay"], 0.05);
  EXPECT_EQ(first["options"]["grad-clip"], 1.0);  // not given: its default, recorded
  EXPECT_EQ(first["options"]["precision"], "fp32");
  EXPECT_EQ(first["options"]["warmup-steps"], "auto");
  EXPECT_EQ(first["config"]["d_model"], 32);
  EXPECT_EQ(first["world_size"], 1);
  EXPECT_EQ(first["hosts"].size(), 1u);
  EXPECT_EQ(first["versions"]["libtorch"].get<std::string>().rfind("1.", 0), 0u) << first["versions"];
  EXPECT_FALSE(first["versions"]["crsm"].get<std::string>().empty());
  EXPECT_NE(first["command_line"].dump().find("--weight-decay"), std::string::npos);
  EXPECT_EQ(lines[1]["options"]["resume"], "auto");
  EXPECT_EQ(lines[1]["options"]["max-steps"], 3);
  EXPECT_GE(lines[1]["time"].get<std::string>(), first["time"].get<std::string>());

  const auto version = run_command(crsm_train("--version"));
  EXPECT_EQ(version.status, 0) << version.output;
  EXPECT_EQ(version.output.rfind("crsm_train " + first["versions"]["crsm"].get<std::string>() + "\n", 0), 0u)
      << version.output;
  EXPECT_NE(version.output.find("  libtorch: 1."), std::string::npos) << version.output;
  EXPECT_NE(version.output.find("  mpi: "), std::string::npos) << version.output;
}

// --set takes any config key over the config file; --print-config shows the result and
// runs nothing (its command's other required flags are not needed for it).
TEST_F(CliTrain, SetOverridesAnyConfigKeyAndPrintConfigShowsTheResult) {
  const auto printed = run_command(crsm_train("train --config " + source_path("configs/tiny.json") +
                                              " --set lr=0.005 --set tie_embeddings=true --set seed=9 --print-config"));
  ASSERT_EQ(printed.status, 0) << printed.output;
  const auto config = nlohmann::json::parse(printed.output);
  EXPECT_EQ(config["lr"], 0.005);
  EXPECT_EQ(config["tie_embeddings"], true);
  EXPECT_EQ(config["seed"], 9);
  EXPECT_EQ(config["d_model"], 32);  // the file's
  const auto pipeline = run_command(crsm_train("pipeline --config " + source_path("configs/tiny.json") +
                                               " --set dynamics_samples=77 --print-config"));
  ASSERT_EQ(pipeline.status, 0) << pipeline.output;
  EXPECT_EQ(nlohmann::json::parse(pipeline.output)["dynamics_samples"], 77);
  // A run trained with --set records the value it used.
  ASSERT_EQ(run_command(crsm_train(train_args("set_run", "--no-value-loss --max-steps 1 --eval-every 0 --set lr=0.0042"))).status, 0);
  const auto recorded = nlohmann::json::parse(read_file(work->path() / "set_run" / "config.json"));
  EXPECT_EQ(recorded["lr"], 0.0042);
}

// A preemption lands anywhere: a run resumed in the middle of a logging window reports
// the window's mean over all its steps, as the uninterrupted run does, not over the
// steps since the resume.
TEST_F(CliTrain, ResumeInsideALoggingWindowReportsTheWholeWindow) {
  const std::string args = "--no-value-loss --max-steps 8 --log-every 4 --save-every 3 --keep-last 0 --eval-every 0 ";
  const auto straight = run_command(crsm_train(train_args("window_straight", args)));
  ASSERT_EQ(straight.status, 0) << straight.output;
  fs::create_directories(work->path() / "window_resumed" / "checkpoints");
  fs::copy(work->path() / "window_straight" / "checkpoints" / "step_00000003",
           work->path() / "window_resumed" / "checkpoints" / "step_00000003", fs::copy_options::recursive);
  const auto resumed = run_command(crsm_train(train_args("window_resumed", args + "--resume auto")));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  const auto a = metrics_of(work->path() / "window_straight", "train");
  const auto b = metrics_of(work->path() / "window_resumed", "train");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(b[i]["step"], a[i]["step"]);
    EXPECT_EQ(b[i]["loss"].get<double>(), a[i]["loss"].get<double>()) << "step " << b[i]["step"];
  }
}

TEST_F(CliTrain, StageFourStartsFromAStageOneCheckpoint) {
  const auto stage1 = run_command(crsm_train(train_args("stage1", "--no-value-loss --max-steps 3 --eval-every 0")));
  ASSERT_EQ(stage1.status, 0) << stage1.output;
  const auto stage4 = run_command(crsm_train(train_args(
      "stage4", "--max-steps 3 --log-every 1 --eval-every 0 --resume " + work->str("stage1"))));
  ASSERT_EQ(stage4.status, 0) << stage4.output;
  EXPECT_NE(stage4.output.find("weights only"), std::string::npos) << stage4.output;
  const auto records = metrics_of(work->path() / "stage4", "train");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0]["step"], 1);
  EXPECT_TRUE(records[0].contains("value_loss"));
  const auto manifest = nlohmann::json::parse(
      read_file(work->path() / "stage4" / "checkpoints" / "step_00000003" / "manifest.json"));
  EXPECT_EQ(manifest["stage"], "finetune");
}

TEST_F(CliTrain, GenerateIsDeterministicPerSeed) {
  const auto trained = run_command(crsm_train(train_args("gen", "--no-value-loss --max-steps 20 --eval-every 0")));
  ASSERT_EQ(trained.status, 0) << trained.output;
  auto gen = [&](const std::string& extra) {
    return run_command(crsm_train("generate --threads 1 --model " + work->str("gen") +
                                  " --prompt 'ROMEO:' --max-length 40 " + extra));
  };
  const auto a = gen("--seed 5"), b = gen("--seed 5"), c = gen("--seed 6");
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_NE(a.output, c.output);
  EXPECT_EQ(a.output.rfind("ROMEO:", 0), 0u) << a.output;
  const auto g1 = gen("--temperature 0 --seed 1"), g2 = gen("--temperature 0 --seed 2");
  EXPECT_EQ(g1.output, g2.output) << "greedy decoding ignores the seed";
}

TEST_F(CliTrain, ExportWritesSafetensorsThatPythonReads) {
  const auto trained = run_command(crsm_train(train_args("export", "--no-value-loss --max-steps 1 --eval-every 0")));
  ASSERT_EQ(trained.status, 0) << trained.output;
  const auto exported = run_command(crsm_train("export --checkpoint " + work->str("export") +
                                               " --output " + work->str("model.safetensors")));
  ASSERT_EQ(exported.status, 0) << exported.output;
  // A dozen lines of numpy read it: the format Python users get.
  const auto py = run_command(
      "/usr/bin/python3 -c \"import json,struct,numpy as np,sys\n"
      "b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n])\n"
      "e=h['embedding.weight']; s,t=e['data_offsets']\n"
      "a=np.frombuffer(b[8+n+s:8+n+t],dtype=np.float32).reshape(e['shape'])\n"
      "print(e['shape'], len([k for k in h if k!='__metadata__']), json.loads(h['__metadata__']['config'])['d_model'], np.isfinite(a).all())\" " +
      work->str("model.safetensors"));
  ASSERT_EQ(py.status, 0) << py.output;
  EXPECT_NE(py.output.find("[258, 32]"), std::string::npos) << py.output;
  EXPECT_NE(py.output.find(" 32 True"), std::string::npos) << py.output;
}

TEST_F(CliTrain, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  const auto good = run_command(crsm_train(train_args("diverge", "--no-value-loss --max-steps 2 --eval-every 0 --keep-last 0")));
  ASSERT_EQ(good.status, 0) << good.output;
  // An absurd learning rate sends the weights to infinity within a step or two.
  const auto diverged = run_command(crsm_train(train_args(
      "diverge", "--no-value-loss --max-steps 12 --eval-every 0 --save-every 1 --keep-last 0 --lr 1e30 --grad-clip 0 --resume auto")));
  EXPECT_EQ(diverged.status, 3) << diverged.output;
  const std::string said = "non-finite loss at step ";
  const auto at = diverged.output.find(said);
  ASSERT_NE(at, std::string::npos) << diverged.output;
  const int64_t bad_step = std::stoll(diverged.output.substr(at + said.size()));
  const auto ckpts = work->path() / "diverge" / "checkpoints";
  std::string latest = read_file(ckpts / "latest");
  latest = latest.substr(0, latest.find('\n'));
  const auto manifest = nlohmann::json::parse(read_file(ckpts / latest / "manifest.json"));
  // Saving every step, the newest checkpoint is the last step before the bad one.
  EXPECT_EQ(manifest["step"].get<int64_t>(), bad_step - 1) << "nothing is saved once the loss is non-finite";
  // The checkpoint from before the divergence is intact and resumable.
  const auto resumed = run_command(crsm_train(train_args(
      "diverge", "--no-value-loss --max-steps 4 --eval-every 0 --resume " + (ckpts / "step_00000002").string())));
  EXPECT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("at step 2"), std::string::npos) << resumed.output;
}

TEST_F(CliTrain, PlotDrawsTheRunsLossCurves) {
  const auto trained = run_command(crsm_train(train_args("plotted", "--no-value-loss --max-steps 6 --log-every 2 --eval-every 3")));
  ASSERT_EQ(trained.status, 0) << trained.output;
  const auto plot = run_command(crsm_train("plot " + work->str("plotted") + " --output " + work->str("loss.svg")));
  ASSERT_EQ(plot.status, 0) << plot.output;
  const std::string svg = read_file(work->path() / "loss.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("plotted train"), std::string::npos);
  EXPECT_NE(svg.find("plotted val"), std::string::npos);
}

}  // namespace
