// The planning evaluation and the pipeline end to end, as a user runs them (SPEC §9, §10):
// the report is the same on 1, 2 and 3 ranks, a tiny pipeline runs every stage under
// mpirun and continues where it stopped, its skip flags reuse what is there and say so,
// and a pipeline killed in stage 2 resumes there.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "../cli/cli_test_support.h"

namespace {

using namespace crsm::testing;
using Clock = std::chrono::steady_clock;

// Everything but the timings, which may differ between runs.
nlohmann::json without_timing(const nlohmann::json& j) {
  if (j.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, v] : j.items())
      if (k != "timing") out[k] = without_timing(v);
    return out;
  }
  if (j.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : j) out.push_back(without_timing(v));
    return out;
  }
  return j;
}

class EvalCli : public ::testing::Test {
 protected:
  // Generated ARC tasks ({W}/arc) and a tiny backbone trained on them with value heads ({W}/run).
  static void SetUpTestSuite() {
    work = new TempDir("eval_cli");
    const auto arc = run_command(crsm_train("prepare-arc --output " + work->str("arc") +
                                            " --tasks 6 --train-tasks 400 --min-size 2 --max-size 3 --seed 3"));
    ASSERT_EQ(arc.status, 0) << arc.output;
    const auto r = run_command(crsm_train("train --config " + source_path("configs/tiny.json") + " --data " +
                                          work->str("arc/train.txt") + " --checkpoint-dir " + work->str("run") +
                                          " --threads 1 --eval-every 0 --eval-batches 2 --max-steps 6"));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete work; }

  static std::string pipeline_args(const std::string& dir, const std::string& extra) {
    return "pipeline --config " + source_path("configs/tiny.json") + " --output-dir " + work->str(dir) + " --data " +
           work->str("arc/train.txt") + " --tasks " + work->str("arc/eval") +
           " --backbone-steps 6 --finetune-steps 3 --dynamics-samples 600 --dynamics-steps 4 --check-samples 64 "
           "--threads 1 " + extra;
  }

  static TempDir* work;
};
TempDir* EvalCli::work = nullptr;

TEST_F(EvalCli, TheReportIsTheSameOnOneTwoAndThreeRanks) {
  nlohmann::json first;
  for (int world : {1, 2, 3}) {
    const std::string out = work->str("eval" + std::to_string(world) + ".json");
    const auto r = run_command("timeout 240 " + mpirun(world) +
                               crsm_train("eval --model " + work->str("run") + " --tasks " + work->str("arc/eval") +
                                          " --simulations 6 --output " + out));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("planning evaluation: 6 test outputs, planner exact"), std::string::npos) << r.output;
    const auto report = nlohmann::json::parse(read_file(out));
    EXPECT_EQ(report["timing"]["world_size"], world);
    EXPECT_EQ(report["modes"]["mcts+inject"]["tasks"], 6);
    EXPECT_EQ(report["modes"]["greedy"]["by_family"].size(), 6u);
    if (world == 1) first = without_timing(report);
    else EXPECT_EQ(without_timing(report), first) << "world " << world;
  }
  // More ranks than tasks: a rank with nothing to decode still takes part in the gather.
  const auto few = run_command("timeout 120 " + mpirun(3) +
                               crsm_train("eval --model " + work->str("run") + " --tasks " + work->str("arc/eval") +
                                          " --max-tasks 2 --modes greedy --output " + work->str("few.json")));
  ASSERT_EQ(few.status, 0) << few.output;
  const auto report = nlohmann::json::parse(read_file(work->path() / "few.json"));
  EXPECT_EQ(report["modes"]["greedy"]["tasks"], 2);
  EXPECT_EQ(report["items"].size(), 2u);
}

// The sampling modes draw each sample from a seed of its item and index alone: the same
// report on one and two ranks. The oracle is the ceiling of every pick among the same
// samples, and a budget sets every mode's N and the search's simulations.
TEST_F(EvalCli, SampledModesGiveTheSameReportOnAnyRanksAndABudgetSetsTheirN) {
  const std::string modes = " --modes greedy,sample,vote@3,logprob@3,value@3,value-vote@3,pass@3,beam@2,beam-row@2";
  nlohmann::json first;
  for (int world : {1, 2}) {
    const std::string out = work->str("sampled" + std::to_string(world) + ".json");
    const auto r = run_command("timeout 240 " + mpirun(world) +
                               crsm_train("eval --model " + work->str("run") + " --tasks " + work->str("arc/eval") +
                                          modes + " --output " + out));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("vs greedy (tasks +/-, McNemar p)"), std::string::npos) << r.output;
    const auto report = nlohmann::json::parse(read_file(out));
    if (world == 1) first = without_timing(report);
    else EXPECT_EQ(without_timing(report), first);
  }
  const auto& m = first["modes"];
  for (const char* pick : {"vote@3", "logprob@3", "value@3", "value-vote@3", "sample"})
    EXPECT_LE(m[pick]["solved"].get<int>(), m["pass@3"]["solved"].get<int>()) << pick;
  EXPECT_EQ(m["greedy"]["compute"]["vs_greedy"], 1.0);
  EXPECT_GT(m["vote@3"]["compute"]["vs_greedy"].get<double>(), m["sample"]["compute"]["vs_greedy"].get<double>());
  EXPECT_GT(m["value@3"]["compute"]["value_evals"].get<int>(), 0);
  EXPECT_EQ(m["vote@3"]["mcnemar"]["vs_greedy"]["against"], "greedy");
  EXPECT_TRUE(m["vote@3"]["mcnemar"].contains("vs_baseline") != m["logprob@3"]["mcnemar"].contains("vs_baseline"))
      << "one of the two is the baseline the other is compared with";
  EXPECT_FALSE(m["greedy"]["mcnemar"].contains("vs_greedy"));
  EXPECT_EQ(m["vote@3"]["outcome_calibration"]["answers"], 6 * 3);  // every sampled answer's value against its outcome
  int64_t by_family = 0;  // and per family: six tasks, one of each
  for (const auto& [family, f] : m["vote@3"]["outcome_calibration"]["by_family"].items()) by_family += f["answers"].get<int64_t>();
  EXPECT_EQ(by_family, 6 * 3);
  EXPECT_EQ(m["vote@3"]["outcome_calibration"]["by_family"].size(), 6u);
  EXPECT_FALSE(m["greedy"].contains("outcome_calibration"));
  for (const char* beam : {"beam@2", "beam-row@2"}) {  // on exact steps (the run has no dynamics)
    EXPECT_GT(m[beam]["compute"]["answer_steps"].get<int>(), 0) << beam;
    EXPECT_EQ(m[beam]["compute"]["dynamics_steps"], 0) << beam;
    EXPECT_GT(m[beam]["compute"]["value_evals"].get<int>(), 0) << beam;
  }

  const auto budget = run_command("timeout 240 " + crsm_train("eval --model " + work->str("run") + " --tasks " +
                                                              work->str("arc/eval") + " --max-tasks 2 --modes greedy,vote,mcts,beam --budget 4 --output " +
                                                              work->str("budget.json")));
  ASSERT_EQ(budget.status, 0) << budget.output;
  const auto b = nlohmann::json::parse(read_file(work->path() / "budget.json"));
  EXPECT_TRUE(b["modes"].contains("vote@4"));
  EXPECT_TRUE(b["modes"].contains("beam@2"));
  EXPECT_EQ(b["setup"]["n_simulations"], 3);
  EXPECT_EQ(b["setup"]["budget"], 4);
}

// A preemption signal while the tasks are decoded ends eval at its next token with status
// 4 and a line naming the signal, on one rank (SIGTERM) and under mpirun (SIGUSR1, which
// mpirun forwards); no report is written.
TEST_F(EvalCli, EvalStopsOnAPreemptionSignalWhileDecoding) {
  for (const int world : {1, 2}) {
    const int sig = world == 1 ? SIGTERM : SIGUSR1;
    const std::string out = work->str("stopped" + std::to_string(world) + ".json");
    const auto job = spawn((world == 1 ? "" : mpirun(world)) +
                               crsm_train("eval --model " + work->str("run") + " --tasks " + work->str("arc/eval") +
                                          " --simulations 200 --threads 1 --output " + out),
                           work->str("stopped" + std::to_string(world) + ".log"));
    ASSERT_TRUE(wait_for_text(job, "eval: decoding 6 test outputs", 120)) << read_file(job.log);
    ::kill(job.pid, sig);
    const int status = wait_for(job, 120);
    const std::string log = read_file(job.log);
    EXPECT_EQ(status, 4) << log;
    EXPECT_NE(log.find(std::string("eval: preempted by ") + (sig == SIGTERM ? "SIGTERM" : "SIGUSR1") +
                       " before its report was complete; nothing was written"),
              std::string::npos)
        << log;
    EXPECT_FALSE(fs::exists(out));
  }
}

// Deliberative generation stops at the next token: what it printed stays printed.
TEST_F(EvalCli, DeliberativeGenerationStopsOnAPreemptionSignal) {
  const auto job = spawn(crsm_train("generate --model " + work->str("run") +
                                    " --deliberate --sync --simulations 64 --max-length 100000 --threads 1 --prompt in"),
                         work->str("generate_stopped.log"));
  ASSERT_TRUE(wait_for_text(job, "in", 60)) << read_file(job.log);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(job.pid, SIGUSR1);
  const int status = wait_for(job, 60);
  const std::string log = read_file(job.log);
  EXPECT_EQ(status, 4) << log;
  EXPECT_NE(log.find("generate: preempted by SIGUSR1 after "), std::string::npos) << log;
  EXPECT_NE(log.find(" of at most 100000 new tokens (printed above)"), std::string::npos) << log;
}

// With value_target outcome (as configs/arc_small.json), stage 4 goes on with rollouts
// of the fine-tuned model on the rollout tasks and its value heads trained on them; the
// dynamics are distilled from that model, which the evaluation searches with.
TEST_F(EvalCli, APipelineRunsEveryStageUnderMpirunAndContinuesWhereItStopped) {
  const std::string outcome = "--set value_target=outcome --rollout-tasks " + work->str("arc/train.jsonl") +
                              " --rollout-max-tasks 20 --rollout-samples 2 --outcome-steps 2 ";
  const auto r = run_command("timeout 280 " + mpirun(2) + crsm_train(pipeline_args("pipe", outcome)));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const std::string& said : std::vector<std::string>{"== stage 1", "== stage 4", "== stage 4: rollouts", "== stage 4: outcome values", "== stage 2",
                           "== stage 3", "$ crsm_train train", "$ crsm_train rollouts", "--value-target outcome",
                           "$ crsm_train distill", "$ crsm_train assemble --backbone " + work->str("pipe/outcome"),
                           "check-dynamics", "planning evaluation: 6 test outputs, planner dynamics", "sample: task",
                           "pipeline: done"})
    EXPECT_NE(r.output.find(said), std::string::npos) << said << "\n" << r.output;
  const auto state = nlohmann::json::parse(read_file(work->path() / "pipe" / "pipeline.json"));
  for (const char* stage : {"backbone", "finetune", "rollouts", "outcome", "dynamics", "model", "eval"})
    EXPECT_TRUE(state["done"].contains(stage)) << stage;
  const auto report = nlohmann::json::parse(read_file(work->path() / "pipe" / "eval" / "eval.json"));
  EXPECT_EQ(report["setup"]["planner"], "dynamics");
  EXPECT_TRUE(report["modes"]["value@16"].contains("outcome_calibration"));
  // Outcome values are judged against the answer's outcome, not against each token: a
  // greedy answer that is never right leaves every token a miss.
  const auto& greedy_mode = report["modes"]["greedy"];
  EXPECT_GT(greedy_mode["calibration"]["tokens"].get<int>(), 0);
  if (greedy_mode["items_exact"] == 0) EXPECT_EQ(greedy_mode["calibration"]["token_accuracy"], 0.0) << greedy_mode;
  EXPECT_TRUE(fs::exists(work->path() / "pipe" / "model" / "checkpoints"));
  EXPECT_TRUE(fs::exists(work->path() / "pipe" / "rollouts" / "rollouts.h5"));

  const auto again = run_command("timeout 120 " + crsm_train(pipeline_args("pipe", outcome + "--resume auto")));
  ASSERT_EQ(again.status, 0) << again.output;
  for (const char* said : {"stage 1 done in an earlier run", "stage 4 done in an earlier run",
                           "stage 4's rollouts done in an earlier run", "stage 4's outcome values done in an earlier run",
                           "stage 2 done in an earlier run", "stage 3 done in an earlier run", "evaluation done in an earlier run"})
    EXPECT_NE(again.output.find(said), std::string::npos) << said << "\n" << again.output;
  EXPECT_EQ(again.output.find("$ crsm_train"), std::string::npos) << again.output;

  // Asked for other modes, the evaluation runs again (and only it), and says why.
  const auto greedy = run_command("timeout 120 " + crsm_train(pipeline_args("pipe", outcome + "--resume auto --modes greedy")));
  ASSERT_EQ(greedy.status, 0) << greedy.output;
  EXPECT_NE(greedy.output.find("pipeline: eval: it ran with --modes greedy,vote,logprob,value,mcts,mcts+inject,pass, now greedy; running it again"),
            std::string::npos)
      << greedy.output;
  EXPECT_NE(greedy.output.find("$ crsm_train eval"), std::string::npos) << greedy.output;
  EXPECT_EQ(greedy.output.find("$ crsm_train train"), std::string::npos) << greedy.output;
  auto rerun = nlohmann::json::parse(read_file(work->path() / "pipe" / "eval" / "eval.json"));
  EXPECT_EQ(rerun["setup"]["modes"], "greedy");
  // Its report gone, it is made again.
  fs::remove_all(work->path() / "pipe" / "eval");
  const auto rebuilt = run_command("timeout 120 " + crsm_train(pipeline_args("pipe", outcome + "--resume auto --modes greedy")));
  ASSERT_EQ(rebuilt.status, 0) << rebuilt.output;
  EXPECT_NE(rebuilt.output.find("eval.json is missing; running it again"), std::string::npos) << rebuilt.output;
  EXPECT_TRUE(fs::exists(work->path() / "pipe" / "eval" / "eval.json"));

  // Rollout tasks changed in place: stage 4's rollouts run again, and so does every stage
  // after them.
  const std::string tasks = work->str("pipe_rollout_tasks.jsonl");
  fs::copy_file(work->path() / "arc" / "train.jsonl", tasks);
  const std::string moved = "--set value_target=outcome --rollout-tasks " + tasks +
                            " --rollout-max-tasks 20 --rollout-samples 2 --outcome-steps 2 ";
  ASSERT_EQ(run_command("timeout 120 " + crsm_train(pipeline_args("pipe", moved + "--resume auto"))).status, 0);
  std::string lines = read_file(tasks);
  std::rotate(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(lines.find('\n') + 1), lines.end());
  write_file(tasks, lines);
  const auto changed = run_command("timeout 120 " + crsm_train(pipeline_args("pipe", moved + "--resume auto")));
  ASSERT_EQ(changed.status, 0) << changed.output;
  for (const char* said : {"pipeline: rollouts: it ran with tasks " , "whose files have changed since; running it again",
                           "$ crsm_train rollouts", "pipeline: outcome: it ran with", "$ crsm_train distill", "$ crsm_train eval"})
    EXPECT_NE(changed.output.find(said), std::string::npos) << said << "\n" << changed.output;
  EXPECT_EQ(changed.output.find("--no-value-loss"), std::string::npos) << "stage 1 ran again:\n" << changed.output;
}

TEST_F(EvalCli, SkipFlagsReuseWhatIsThereAndSaySo) {
  fs::create_directories(work->path() / "skip");
  fs::copy(work->path() / "run", work->path() / "skip" / "backbone", fs::copy_options::recursive);
  // Without a command word, as the seed's train_full_crsm.py is run.
  const auto r = run_command("timeout 120 " +
                             crsm_train(pipeline_args("skip", "--skip-backbone --skip-finetune --skip-dynamics").substr(9)));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* said : {"stage 1 skipped (--skip-backbone): reusing", "stage 4 skipped (--skip-finetune)",
                           "so the model is the stage-1 backbone", "stage 2 skipped (--skip-dynamics)",
                           "so the search uses exact backbone steps", "stage 3 skipped: no dynamics model",
                           "planner exact"})
    EXPECT_NE(r.output.find(said), std::string::npos) << said << "\n" << r.output;
  EXPECT_EQ(r.output.find("$ crsm_train train"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(work->path() / "skip" / "eval" / "eval.json"));

  // Resumed without the skip flags: stages 4, 2 and 3 run, and the evaluation runs again on
  // the new model instead of reprinting the stage-1 backbone's report.
  const auto resumed = run_command("timeout 240 " + crsm_train(pipeline_args("skip", "--resume auto")));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  for (const char* said : {"$ crsm_train train", "$ crsm_train distill", "$ crsm_train assemble",
                           "pipeline: eval: it ran with model ", "running it again", "planner dynamics"})
    EXPECT_NE(resumed.output.find(said), std::string::npos) << said << "\n" << resumed.output;
  const auto report = nlohmann::json::parse(read_file(work->path() / "skip" / "eval" / "eval.json"));
  EXPECT_EQ(report["setup"]["planner"], "dynamics");
  EXPECT_NE(report["setup"]["model"].get<std::string>().find("/skip/model/"), std::string::npos) << report["setup"];
}

// SIGUSR1 to mpirun as the pipeline enters stage 3 (assemble and check-dynamics, run by
// rank 0 while the others wait) ends it with status 4 in the stage it is in (stage 3, or
// the evaluation should stage 3 finish first); resumed, it continues there.
TEST_F(EvalCli, APipelineSignalledInStage3StopsThereAndResumes) {
  const std::string args = pipeline_args("signalled", "--modes greedy");
  const auto job = spawn(mpirun(2) + crsm_train(args), work->str("signalled.log"));
  ASSERT_TRUE(wait_for_text(job, "== stage 3", 240)) << read_file(job.log);
  ::kill(job.pid, SIGUSR1);
  const int status = wait_for(job, 120);
  const std::string log = read_file(job.log);
  EXPECT_EQ(status, 4) << log;
  EXPECT_NE(log.find("preempted by SIGUSR1"), std::string::npos) << log;
  const bool in_stage_3 = log.find("pipeline: stopped in stage 3: rerun the same command with --resume auto") != std::string::npos;
  EXPECT_TRUE(in_stage_3 || log.find("pipeline: stopped in the evaluation: rerun") != std::string::npos) << log;
  const auto state = nlohmann::json::parse(read_file(work->path() / "signalled" / "pipeline.json"));
  EXPECT_TRUE(state["done"].contains("dynamics"));
  EXPECT_NE(state["done"].contains("model"), in_stage_3);
  EXPECT_FALSE(state["done"].contains("eval"));
  const auto resumed = run_command("timeout 240 " + mpirun(2) + crsm_train(args + " --resume auto"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  for (const char* said : {"stage 2 done in an earlier run", "planning evaluation: 6 test outputs", "pipeline: done"})
    EXPECT_NE(resumed.output.find(said), std::string::npos) << said << "\n" << resumed.output;
}

// SIGKILL in stage 2, once dynamics training has saved a checkpoint; --resume auto
// continues in stage 2 (every collected transition kept, training from its checkpoint)
// and finishes, without running stages 1 and 4 again.
TEST_F(EvalCli, APipelineKilledInStage2ResumesThere) {
  const auto prep = prepare_shakespeare_prefix(*work, 200000);
  ASSERT_EQ(prep.status, 0) << prep.output;
  const std::string args = "pipeline --config " + source_path("configs/tiny.json") + " --output-dir " + work->str("killed") +
                           " --data " + work->str("data") + " --tasks " + work->str("arc/eval") +
                           " --backbone-steps 4 --finetune-steps 2 --dynamics-samples 20000 --dynamics-steps 600 "
                           "--save-every 20 --check-samples 64 --max-tasks 2 --modes greedy --threads 1";
  const std::string saved = work->str("killed/dynamics/checkpoints/latest");
  Job job = spawn(crsm_train(args), work->str("killed.log"));
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  std::error_code ec;
  while (Clock::now() < deadline && !fs::exists(saved, ec)) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  job.kill();
  const auto state = nlohmann::json::parse(read_file(work->path() / "killed" / "pipeline.json"));
  ASSERT_TRUE(state["done"].contains("finetune")) << read_file(work->path() / "killed.log");
  ASSERT_FALSE(state["done"].contains("dynamics")) << "stage 2 finished before it was killed";

  const auto resumed = run_command("timeout 240 " + crsm_train(args + " --resume auto"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  for (const char* said : {"stage 1 done in an earlier run", "stage 4 done in an earlier run", "resume: continuing from",
                           "(20000 kept from an earlier run", "pipeline: done"})
    EXPECT_NE(resumed.output.find(said), std::string::npos) << said << "\n" << resumed.output;
}

}  // namespace
