// What a step costs (README): the timer, memory and MFU keys of every logging window in
// metrics.jsonl, and the Chrome trace each rank writes for --profile-steps, read as
// Perfetto reads it (JSON with a traceEvents array of named events).
#include <gtest/gtest.h>

#include <map>
#include <regex>

#include "cli_test_support.h"

namespace {

using namespace crsm::testing;

const char* const kPhases[] = {"forward", "backward", "grad_reduce_wait", "optimizer"};

class StepCost : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new TempDir("step_cost");
    const auto r = prepare_shakespeare_prefix(*work, 60000);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete work; }

  static std::string train_args(const std::string& run, const std::string& extra) {
    return "train --config " + source_path("configs/tiny.json") + " --data " + work->str("data") +
           " --checkpoint-dir " + work->str(run) + " --threads 1 --no-value-loss --eval-every 0 --eval-batches 1 " +
           extra;
  }

  // Every window's timer and memory keys: max >= min > 0, and the phases within the step.
  static void expect_timer_keys(const std::vector<nlohmann::json>& records) {
    ASSERT_FALSE(records.empty());
    for (const auto& rec : records) {
      SCOPED_TRACE(rec.dump());
      double phases_min = 0;
      for (const std::string key : {"time/forward_ms", "time/backward_ms", "time/grad_reduce_wait_ms",
                                    "time/optimizer_ms", "time/step_ms", "memory/peak_rss_mib"}) {
        ASSERT_TRUE(rec.contains(key + "_max") && rec.contains(key + "_min")) << key;
        EXPECT_GE(rec[key + "_max"].get<double>(), rec[key + "_min"].get<double>()) << key;
        EXPECT_GT(rec[key + "_min"].get<double>(), 0) << key;
      }
      for (const std::string phase : kPhases) phases_min += rec["time/" + phase + "_ms_min"].get<double>();
      // Each rank's phases lie inside its step; they leave out only taking the batch and
      // reducing the reported losses.
      EXPECT_LE(phases_min, rec["time/step_ms_max"].get<double>() * 1.001);
      EXPECT_GE(phases_min, 0.5 * rec["time/step_ms_min"].get<double>());
      EXPECT_GT(rec["memory/peak_rss_mib_min"].get<double>(), 10);
    }
  }

  static TempDir* work;
};
TempDir* StepCost::work = nullptr;

// One rank: max = min, the phases add up within the step, and mfu follows the 6N rule
// against --peak-tflops (N as the run's log states it).
TEST_F(StepCost, EveryWindowReportsThePhasesMemoryAndMfu) {
  const auto r = run_command(crsm_train(train_args("one_rank", "--max-steps 6 --log-every 3 --peak-tflops 0.5")));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto records = metrics_of(work->path() / "one_rank", "train");
  ASSERT_EQ(records.size(), 2u);
  expect_timer_keys(records);
  std::smatch n;
  ASSERT_TRUE(std::regex_search(r.output, n, std::regex("mfu: 6N FLOPs per item, N = ([0-9]+) trainable parameters, "
                                                        "against 0.5 TFLOP/s per device \\(--peak-tflops\\)")))
      << r.output;
  for (const auto& rec : records) {
    EXPECT_EQ(rec["time/step_ms_max"], rec["time/step_ms_min"]);
    ASSERT_TRUE(rec.contains("mfu")) << rec.dump();
    const double expected = 6 * std::stod(n[1]) * rec["tokens_per_s"].get<double>() / 0.5e12;
    EXPECT_NEAR(rec["mfu"].get<double>(), expected, 1e-9 * expected);
  }
}

// Two ranks at ZeRO stage 3, steps 2 and 3 traced with a checkpoint after step 3: each
// rank's trace is JSON that holds the ranges of that window and no others (one optimizer
// range per step, one checkpoint), in its own process; no mfu on the CPU without a peak.
TEST_F(StepCost, TwoRanksAtZeroStage3WriteAChromeTracePerRank) {
  const auto r = run_command(mpirun(2) + crsm_train(train_args(
      "traced", "--max-steps 4 --log-every 2 --zero-stage 3 --save-every 3 --keep-last 0 --profile-steps 2:3")));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto records = metrics_of(work->path() / "traced", "train");
  ASSERT_EQ(records.size(), 2u);
  expect_timer_keys(records);
  for (const auto& rec : records) EXPECT_FALSE(rec.contains("mfu")) << rec.dump();
  for (int rank = 0; rank < 2; ++rank) {
    const fs::path file = work->path() / "traced" / "traces" / ("rank0000" + std::to_string(rank) + ".json");
    SCOPED_TRACE(file.string());
    ASSERT_TRUE(fs::exists(file));
    const auto trace = nlohmann::json::parse(read_file(file));
    ASSERT_TRUE(trace["traceEvents"].is_array());
    std::map<std::string, int> ranges;
    for (const auto& event : trace["traceEvents"]) {
      EXPECT_EQ(event["pid"], rank) << event.dump();
      if (event["ph"] == "X") {
        EXPECT_TRUE(event["ts"].is_number() && event["dur"].is_number()) << event.dump();
        ++ranges[event["name"].get<std::string>()];
      }
    }
    for (const char* name : {"crsm::forward", "crsm::backward", "crsm::grad_reduce_wait", "crsm::bucket_reduce",
                             "crsm::bucket_wait", "crsm::zero3_gather", "crsm::zero3_gather_wait", "aten::mm"})
      EXPECT_GT(ranges[name], 0) << name;
    EXPECT_EQ(ranges["crsm::optimizer"], 2);
    EXPECT_EQ(ranges["crsm::checkpoint_save"], 1);
  }
}

}  // namespace
