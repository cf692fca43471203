// crsm_train pipeline (SPEC §10, the seed's train_full_crsm.py): every stage in one
// command, each in its own directory under --output-dir, run by the same commands a user
// runs one at a time (each stage prints its command line first):
//
//   DIR/data           the corpus, prepared once
//   DIR/backbone       stage 1: the language model           (train --no-value-loss)
//   DIR/finetune       stage 4: with value heads, from stage 1 (train --resume)
//   DIR/rollouts       stage 4, with value_target outcome: the fine-tuned model's
//                      answers to the rollout tasks, labelled     (rollouts)
//   DIR/outcome        and its value heads trained on them       (train --value-target outcome)
//   DIR/dynamics       stage 2: transitions and the dynamics  (distill)
//   DIR/model          stage 3: backbone + dynamics, checked  (assemble, check-dynamics)
//   DIR/eval           the planning evaluation                (eval)
//   DIR/pipeline.json  what the pipeline was asked to do, and the stages done, each with
//                      what it read (checkpoints by the digest of their files) and the
//                      options that shape its result: on --resume auto a stage whose
//                      inputs or options changed, or whose output is gone, runs again
//
// Stage 4 runs before stages 2 and 3: the dynamics model must describe the backbone the
// planner searches with, and fine-tuning changes that backbone's latents (assemble
// refuses a dynamics model distilled from another backbone). Outcome values leave the
// backbone as it was (only the heads train), so the dynamics distilled after them are
// the fine-tuned backbone's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "base/atomic_file.h"
#include "base/file_read.h"
#include "base/new_directories.h"
#include "cli/bundled_data.h"
#include "cli/commands.h"
#include "cli/session.h"
#include "cli/stages.h"
#include "cli/options.h"
#include "cli/pipeline_stages.h"
#include "cli/outputs.h"
#include "data/arc_task.h"
#include "checkpoint/run_dir.h"
#include "checkpoint/store.h"
#include "dist/communicator.h"
#include "dist/runtime.h"
#include "checkpoint/sha256.h"
#include "eval/planning_eval.h"
#include "base/exit_status.h"
#include "train/training_data.h"

namespace crsm::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A stage's command line, printed as the crsm_train command it stands for (by rank 0:
// under mpirun every rank runs the stage).
ParsedOptions announced(const CommandLine& line, bool root) {
  if (root) {
    std::printf("$ %s\n", line.text().c_str());
    std::fflush(stdout);
  }
  return line.parse();
}

bool holds_checkpoint(const fs::path& run_dir) { return checkpoint::RunDir(run_dir.string()).holds_checkpoints(); }

// DIR/eval/eval.json: the evaluation stage's report.
std::string eval_report_of(const fs::path& dir) { return checkpoint::RunDir((dir / "eval").string()).eval_report(); }

// What a stage read, by content: a checkpoint (a run directory stands for its newest
// complete one) by the digest of its files, shown by its path.
json checkpoint_identity(const std::string& spec) {
  std::vector<std::string> notes;
  const std::string ckpt = checkpoint::resolve_checkpoint(spec, "the pipeline's input", &notes);
  return {{"path", ckpt}, {"digest", checkpoint::checkpoint_digest(ckpt)}};
}

json file_identity(const fs::path& file) { return {{"path", file.string()}, {"digest", checkpoint::sha256_file(file.string())}}; }

// A task source by content: a file by its digest, a directory by the names and digests of
// its files, in name order.
json tasks_identity(const fs::path& source) {
  if (!fs::is_directory(source)) return file_identity(source);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(source))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  checkpoint::Sha256 hash;
  for (const auto& f : files) {
    const std::string line = f.filename().string() + " " + checkpoint::sha256_file(f.string()) + "\n";
    hash.update(line.data(), line.size());
  }
  return {{"path", source.string()}, {"digest", hash.hex_digest()}};
}

// "model A, now B; --modes x, now y": what differs between two stage keys.
std::string describe_change(const json& was, const json& now) {
  std::string text;
  for (const auto& [field, value] : now.items()) {
    const json old = was.value(field, json());
    if (old == value) continue;
    const auto shown = [](const json& v) {
      if (v.is_object() && v.contains("path")) return v["path"].get<std::string>();
      return v.is_string() ? v.get<std::string>() : v.dump();
    };
    std::string change = field + " " + shown(old) + ", now " + shown(value);
    if (!old.is_null() && shown(old) == shown(value)) change = field + " " + shown(value) + ", whose files have changed since";
    text += (text.empty() ? "" : "; ") + change;
  }
  return text;
}

// What the stages hand on to the ones after them: the paths they read.
struct Products {
  std::string backbone;  // stage 1's run
  std::string rollouts;  // stage 4's rollout file, with value_target outcome
  std::string model;     // the language model the later stages use: stage 4's run, or stage 1's
  std::string dynamics;  // stage 2's run ("" without a dynamics model: exact steps)
  std::string planner;   // what the evaluation searches with: stage 3's run, or `model`
};

// A stage's end: the path it hands on, or the status it stopped with (kExitPreempted).
struct StageEnd {
  int status = kExitOk;
  std::string product;
};

class Pipeline {
 public:
  Pipeline(const ParsedOptions& o, Session& session, RunConfig file_config)
      : o_(o), session_(session), comm_(*session.comm), root_(comm_.rank() == 0),
        dir_(fs::absolute(o.text("output-dir")).lexically_normal()), file_config_(std::move(file_config)) {
    inputs_.config_file = fs::absolute(o.text("config")).lexically_normal().string();
    config_ = file_config_;
    o.apply_to(config_);
    inputs_.device = config_.device;
    data_ = o.has("data") ? fs::absolute(o.text("data")).string()
            : !config_.inputs.data.empty() ? config_.inputs.data
                                           : bundled_data("tinyshakespeare.txt", "--data");
    if (o.has("tasks"))
      for (const auto& t : o.texts("tasks")) inputs_.tasks.push_back(fs::absolute(t).string());
    else
      inputs_.tasks.push_back(!config_.inputs.tasks.empty() ? config_.inputs.tasks : bundled_data("arc/eval", "--tasks"));
    if (outcome_values())
      inputs_.rollout_tasks = o.has("rollout-tasks") ? fs::absolute(o.text("rollout-tasks")).string() : config_.inputs.rollout_tasks;
  }

  int run() {
    if (!open_state()) return kExitPreempted;
    // The stages in the order they run, each with the product it sets.
    struct Stage {
      const char* name;
      StageEnd (Pipeline::*run)(const Products&);
      std::string Products::*product;
    };
    static const Stage kStages[] = {{"stage 1", &Pipeline::backbone, &Products::backbone},
                                    {"stage 4", &Pipeline::finetune, &Products::model},
                                    {"stage 4's rollouts", &Pipeline::rollouts, &Products::rollouts},
                                    {"stage 4's outcome values", &Pipeline::outcome, &Products::model},
                                    {"stage 2", &Pipeline::dynamics, &Products::dynamics},
                                    {"stage 3", &Pipeline::assemble, &Products::planner},
                                    {"the evaluation", &Pipeline::evaluate, nullptr}};
    Products products;
    for (const auto& stage : kStages) {
      const std::string resume = std::string("pipeline: stopped in ") + stage.name +
                                 ": rerun the same command with --resume auto to continue there";
      StageEnd end;
      try {
        end = (this->*stage.run)(products);
      } catch (const Preempted& e) {
        throw Preempted(std::string(e.what()) + "\n" + resume);
      }
      if (end.status == kExitPreempted) say("%s\n", resume.c_str());
      if (end.status != kExitOk) return end.status;
      if (stage.product) products.*stage.product = end.product;
    }
    std::string stages;
    for (const char* stage : {"backbone", "finetune", "rollouts", "outcome", "dynamics", "model", "eval"})
      if (state_["done"].contains(stage))
        stages += (stages.empty() ? "" : ", ") + std::string(stage) + " " + duration(state_["done"][stage]["minutes"]);
    say("\npipeline: done in %s (stages, over all runs: %s): the model is %s, the report %s\n",
        duration(minutes_since(start_)).c_str(), stages.c_str(), products.planner.c_str(), eval_report_of(dir_).c_str());
    return kExitOk;
  }

 private:
  template <typename... Args>
  void say(const char* format, Args... args) const {
    if (!root_) return;
    std::printf(format, args...);
    std::fflush(stdout);
  }

  static std::string duration(double minutes) {
    const int seconds = static_cast<int>(minutes * 60 + 0.5);
    return std::to_string(seconds / 60) + "m" + (seconds % 60 < 10 ? "0" : "") + std::to_string(seconds % 60) + "s";
  }

  static double minutes_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count() / 60; }

  // The one place the pipeline decides whether stage 4 ends with outcome values.
  bool outcome_values() const { return config_.model.value_target == model::ValueTarget::kOutcome; }

  // What this pipeline was asked to do: an earlier one in the same directory must have
  // been asked the same to be continued.
  json plan() const {
    return {{"config_file", inputs_.config_file}, {"config", to_json(config_)}, {"data", data_}, {"tasks", inputs_.tasks},
            {"backbone_steps", o_.has("backbone-steps") ? json(o_.integer("backbone-steps")) : json()},
            {"finetune_steps", o_.has("finetune-steps") ? json(o_.integer("finetune-steps")) : json()},
            {"dynamics_steps", o_.has("dynamics-steps") ? json(o_.integer("dynamics-steps")) : json()}};
  }

  // Everything that can be refused is checked before anything is written: the output
  // directory, what the skip flags would reuse, the task files, the corpus (prepared
  // into DIR/data). Then DIR/pipeline.json is started, or an earlier one read to continue.
  // False when a preemption signal stopped the corpus' preparation.
  bool open_state() {
    const fs::path file = checkpoint::RunDir(dir_.string()).pipeline_record();
    const std::string text = dist::run_on_root(comm_, [&]() -> std::string {
      std::error_code ec;
      const bool empty = !fs::exists(dir_, ec) || (fs::is_directory(dir_, ec) && fs::is_empty(dir_, ec));
      const bool earlier = fs::exists(file, ec);
      // A skip flag reuses what DIR holds: a backbone trained by hand, an earlier pipeline's stages.
      const bool reusing = o_.has("resume") || o_.is_set("skip-backbone") || o_.is_set("skip-finetune") ||
                           o_.is_set("skip-dynamics");
      check_output_directory("--output-dir", dir_.string(), {});
      if (!empty && !earlier && !reusing)
        throw UsageError("--output-dir " + dir_.string() + " is not empty and holds no pipeline.json: choose a new "
                         "directory (or a --skip flag to reuse what it holds)");
      if (earlier && !reusing)
        throw UsageError("--output-dir " + dir_.string() + " holds an earlier pipeline: add --resume auto to continue it, "
                         "or choose a new directory");
      if (outcome_values() && inputs_.rollout_tasks.empty())
        throw UsageError("value_target outcome: stage 4 samples rollouts on tasks with answers: give --rollout-tasks "
                         "FILE|DIR or the config's rollout_tasks (or --set value_target=next_token)");
      if (outcome_values()) data::read_tasks(inputs_.rollout_tasks, o_.integer("rollout-max-tasks"));
      if (o_.is_set("skip-backbone") && !holds_checkpoint(dir_ / "backbone"))
        throw UsageError("--skip-backbone: " + (dir_ / "backbone").string() + " holds no checkpoint to reuse");
      json state = earlier ? base::read_json_file(file.string())
                           : json{{"format", 1}, {"plan", plan()}, {"done", json::object()}, {"started", json::object()}};
      if (earlier) check_same_plan(state.at("plan"));
      for (const auto& t : inputs_.tasks) data::read_tasks(t, o_.integer("max-tasks"));
      base::NewDirectories made;
      made.create(dir_.string());
      auto local = dist::make_local_communicator();
      state["prepared"] = train::resolve_training_data(data_, dir_.string(), *local);
      if (state["prepared"] == "") return "";
      base::write_file_atomically(file.string(), state.dump(1) + "\n");
      made.keep();
      return state.dump();
    });
    if (text.empty()) return false;
    state_ = json::parse(text);
    if (!state_.contains("started")) state_["started"] = json::object();
    inputs_.prepared = state_["prepared"];
    start_ = Clock::now();
    return true;
  }

  void check_same_plan(const json& earlier) const {
    const json now = plan();
    for (const auto& [key, value] : now.items()) {
      const json was = earlier.value(key, json());
      if (key == "config") {
        for (const auto& [k, v] : value.items())
          if (was.value(k, json()) != v)
            throw UsageError("--resume auto: " + dir_.string() + " was started with config key '" + k + "' = " +
                             was.value(k, json()).dump() + ", now " + v.dump() + ": choose a new --output-dir");
      } else if (was != value) {
        throw UsageError("--resume auto: " + dir_.string() + " was started with " + key + " = " + was.dump() + ", now " +
                         value.dump() + ": choose a new --output-dir");
      }
    }
  }

  void save_state() {
    if (root_) base::write_file_atomically(checkpoint::RunDir(dir_.string()).pipeline_record(), state_.dump(1) + "\n");
    comm_.barrier();
  }

  // Whether `stage` is done and still stands for what this run asks of it: recorded done
  // with the same key (what it read, by content, and the options that shape its result)
  // and its output still there. Otherwise an earlier run's work on it that no longer fits
  // (done with another key, or started with one) is removed, saying why, and the stage is
  // recorded as started with `key`. A record without a key (written before keys were
  // kept) is taken as it is. `dir` is the stage's directory, `present` whether what it
  // leaves there (`output`, for messages) is still there.
  bool up_to_date(const std::string& stage, const json& key, const fs::path& dir, const std::string& output, bool present) {
    std::error_code ec;
    const json& done = state_["done"];
    const json& started = state_["started"];
    std::string why;
    if (done.contains(stage)) {
      const json was = done[stage].value("key", key);
      if (was == key && present) return true;
      why = was != key ? "it ran with " + describe_change(was, key) : output + " is missing";
    } else if (started.contains(stage) && started[stage] != key) {
      why = "its interrupted run was started with " + describe_change(started[stage], key);
    }
    if (!why.empty()) {
      say("pipeline: %s: %s; running it again\n", stage.c_str(), why.c_str());
      comm_.barrier();
      if (root_) fs::remove_all(dir, ec);
      state_["done"].erase(stage);
    }
    state_["started"][stage] = key;
    save_state();
    return false;
  }

  void mark_done(const std::string& stage, Clock::time_point started) {
    state_["done"][stage] = {{"minutes", minutes_since(started)}, {"key", state_["started"][stage]}};
    state_["started"].erase(stage);
    save_state();
  }

  // A stage directory an interrupted run left without a checkpoint holds nothing to
  // continue from (its command would refuse it): it starts again. Rank 0 alone looks:
  // a rank that looked for itself could already see the directory that rank 0, gone on
  // into the stage, has just created, and wait in a barrier the others never join.
  void restart_if_unsaved(const fs::path& run_dir) {
    dist::run_on_root(comm_, [&] {
      std::error_code ec;
      if (!fs::exists(run_dir, ec) || holds_checkpoint(run_dir)) return std::string();
      std::printf("pipeline: %s holds no checkpoint of the interrupted run: starting it again\n", run_dir.c_str());
      fs::remove_all(run_dir);
      return run_dir.string();
    });
  }

  // A training stage run, recorded done when it finished; its product is its run.
  StageEnd train(const std::string& stage, const CommandLine& line, const fs::path& run) {
    const auto started = Clock::now();
    const auto result = run_train(announced(line, root_), file_config_, session_);
    if (result.exit_status == kExitOk) mark_done(stage, started);
    return {result.exit_status, run.string()};
  }

  StageEnd backbone(const Products&) {
    const fs::path run = dir_ / "backbone";
    say("\n== stage 1: backbone (language model) ==\n");
    if (o_.is_set("skip-backbone")) {
      std::vector<std::string> notes;
      const auto ckpt = checkpoint::resolve_checkpoint(run.string(), "--skip-backbone: " + run.string(), &notes);
      say("stage 1 skipped (--skip-backbone): reusing %s\n", ckpt.c_str());
      return {kExitOk, run.string()};
    }
    // Its inputs (config, corpus, steps) are the plan's, which a resumed run may not change.
    if (up_to_date("backbone", json::object(), run, checkpoint::RunDir(run.string()).checkpoints(), holds_checkpoint(run))) {
      say("stage 1 done in an earlier run: %s\n", run.c_str());
      return {kExitOk, run.string()};
    }
    restart_if_unsaved(run);
    return train("backbone", backbone_line(o_, inputs_, run.string()), run);
  }

  StageEnd finetune(const Products& p) {
    const fs::path run = dir_ / "finetune";
    say("\n== stage 4: fine-tuning with value heads (from stage 1) ==\n");
    if (o_.is_set("skip-finetune")) {
      if (holds_checkpoint(run)) {
        say("stage 4 skipped (--skip-finetune): reusing %s\n", run.c_str());
        return {kExitOk, run.string()};
      }
      say("stage 4 skipped (--skip-finetune): %s holds no checkpoint, so the model is the stage-1 backbone (its value "
          "heads untrained)\n", run.c_str());
      return {kExitOk, p.backbone};
    }
    if (up_to_date("finetune", {{"backbone", checkpoint_identity(p.backbone)}}, run,
                   checkpoint::RunDir(run.string()).checkpoints(), holds_checkpoint(run))) {
      say("stage 4 done in an earlier run: %s\n", run.c_str());
      return {kExitOk, run.string()};
    }
    restart_if_unsaved(run);
    return train("finetune", finetune_line(o_, inputs_, run.string(), holds_checkpoint(run) ? "auto" : p.backbone), run);
  }

  // With value_target outcome, the model's answers to the rollout tasks; nothing otherwise.
  StageEnd rollouts(const Products& p) {
    if (!outcome_values()) return {kExitOk, ""};
    const fs::path out = dir_ / "rollouts";
    const std::string master = (out / "rollouts.h5").string();
    say("\n== stage 4: rollouts of %s on %s ==\n", p.model.c_str(), inputs_.rollout_tasks.c_str());
    const json key = {{"model", checkpoint_identity(p.model)}, {"tasks", tasks_identity(inputs_.rollout_tasks)},
                      {"--rollout-max-tasks", o_.integer("rollout-max-tasks")},
                      {"--rollout-samples", o_.integer("rollout-samples")}};
    std::error_code ec;
    if (up_to_date("rollouts", key, out, master, fs::exists(master, ec))) {
      say("stage 4's rollouts done in an earlier run: %s\n", master.c_str());
      return {kExitOk, master};
    }
    // An interrupted collection continues from its rank files (the rollouts command's own resume).
    const auto started = Clock::now();
    run_rollouts(announced(rollouts_line(o_, inputs_, p.model, out.string()), root_), session_);
    mark_done("rollouts", started);
    return {kExitOk, master};
  }

  // With value_target outcome, the value heads of stage 4's model trained on its
  // rollouts (its backbone frozen); the model unchanged otherwise.
  StageEnd outcome(const Products& p) {
    if (!outcome_values()) return {kExitOk, p.model};
    const fs::path run = dir_ / "outcome";
    say("\n== stage 4: outcome values, the value heads of %s trained on its rollouts ==\n", p.model.c_str());
    const json key = {{"backbone", checkpoint_identity(p.model)}, {"rollouts", file_identity(p.rollouts)},
                      {"--outcome-epochs", o_.integer("outcome-epochs")},
                      {"--outcome-steps", o_.has("outcome-steps") ? json(o_.integer("outcome-steps")) : json()},
                      {"--outcome-batch-size", o_.integer("outcome-batch-size")},
                      {"--outcome-lr", o_.number("outcome-lr")}};
    if (up_to_date("outcome", key, run, checkpoint::RunDir(run.string()).checkpoints(), holds_checkpoint(run))) {
      say("stage 4's outcome values done in an earlier run: %s\n", run.c_str());
      return {kExitOk, run.string()};
    }
    restart_if_unsaved(run);
    return train("outcome", outcome_line(o_, inputs_, run.string(), p.rollouts, holds_checkpoint(run) ? "auto" : p.model),
                 run);
  }

  StageEnd dynamics(const Products& p) {
    const fs::path out = dir_ / "dynamics";
    const std::string dynamics_file = checkpoint::RunDir(out.string()).dynamics();
    std::error_code ec;
    say("\n== stage 2: latent dynamics, distilled from %s ==\n", p.model.c_str());
    if (o_.is_set("skip-dynamics")) {
      if (!fs::exists(dynamics_file, ec)) {
        say("stage 2 skipped (--skip-dynamics): %s holds no dynamics model, so the search uses exact backbone steps\n",
            out.c_str());
        return {kExitOk, ""};
      }
      say("stage 2 skipped (--skip-dynamics): reusing %s\n", dynamics_file.c_str());
      return {kExitOk, out.string()};
    }
    // A dynamics model describes one backbone: distilled from another, it is distilled again.
    if (up_to_date("dynamics", {{"backbone", checkpoint_identity(p.model)}}, out, dynamics_file, fs::exists(dynamics_file, ec))) {
      say("stage 2 done in an earlier run: %s\n", out.c_str());
      return {kExitOk, out.string()};
    }
    const auto started = Clock::now();
    const auto line = distill_line(o_, inputs_, p.model, out.string(), config_.dynamics.samples);
    const auto options = announced(line, root_);
    const auto result = run_distill(options, distill_backbone(options), session_);
    if (result.train.exit_status == kExitOk) mark_done("dynamics", started);
    return {result.train.exit_status, out.string()};
  }

  // One process's work (it writes one checkpoint): rank 0 runs it, the others wait.
  StageEnd assemble(const Products& p) {
    const fs::path out = dir_ / "model";
    say("\n== stage 3: backbone + dynamics in one checkpoint, and the dynamics' quality ==\n");
    if (p.dynamics.empty()) {
      say("stage 3 skipped: no dynamics model; the evaluation searches %s with exact backbone steps\n", p.model.c_str());
      return {kExitOk, p.model};
    }
    const json key = {{"backbone", checkpoint_identity(p.model)},
                      {"dynamics", file_identity(checkpoint::RunDir(p.dynamics).dynamics())},
                      {"--check-samples", o_.integer("check-samples")}};
    if (up_to_date("model", key, out, checkpoint::RunDir(out.string()).checkpoints(), holds_checkpoint(out))) {
      say("stage 3 done in an earlier run: %s\n", out.c_str());
      return {kExitOk, out.string()};
    }
    const auto started = Clock::now();
    dist::run_on_root(comm_, [&] {
      if (!holds_checkpoint(out))
        run_assemble(announced(assemble_line(p.model, p.dynamics, out.string()), true));
      run_check_dynamics(announced(check_dynamics_line(o_, inputs_, out.string()), true));
      return std::string();
    });
    mark_done("model", started);
    return {kExitOk, out.string()};
  }

  StageEnd evaluate(const Products& p) {
    const fs::path out = eval_report_of(dir_);
    say("\n== planning evaluation of %s ==\n", p.planner.c_str());
    // The tasks and the search's settings are the plan's; these may change on a resume.
    const json key = {{"model", checkpoint_identity(p.planner)}, {"--modes", o_.text("modes")},
                      {"--max-tasks", o_.integer("max-tasks")}};
    std::error_code ec;
    if (up_to_date("eval", key, out.parent_path(), out.string(), fs::exists(out, ec))) {
      say("evaluation done in an earlier run: %s\n\n%s", out.c_str(),
          eval::format_eval_report(base::read_json_file(out.string())).c_str());
      return {kExitOk, out.string()};
    }
    const auto started = Clock::now();
    run_eval(announced(eval_line(o_, inputs_, p.planner, out.string()), root_), session_);
    mark_done("eval", started);
    return {kExitOk, out.string()};
  }

  const ParsedOptions& o_;
  Session& session_;
  dist::Communicator& comm_;
  const bool root_;
  const fs::path dir_;
  const RunConfig file_config_;  // --config as written: the training stages apply their own flags to it
  std::string data_;
  PipelineInputs inputs_;
  RunConfig config_;  // with the pipeline's flags
  json state_;
  Clock::time_point start_;
};

}  // namespace

int pipeline_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train pipeline --config FILE --output-dir DIR [options]",
                                    pipeline_options());
  if (!parsed) return 0;
  RunConfig file_config = parsed->has("config") ? load_run_config(parsed->text("config")) : RunConfig{};
  RunConfig config = file_config;
  parsed->apply_to(config);
  if (parsed->is_set("print-config")) return print_config(config);
  Session session = start_session(config.device, *parsed, "pipeline");
  return Pipeline(*parsed, session, std::move(file_config)).run();
}

}  // namespace crsm::cli
