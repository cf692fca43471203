// crsm_train pipeline (SPEC §10, the seed's train_full_crsm.py): every stage in one
// command, each in its own directory under --output-dir, run by the same commands a user
// runs one at a time (each stage prints its command line first):
//
//   DIR/data           the corpus, prepared once
//   DIR/backbone       stage 1: the language model           (train --no-value-loss)
//   DIR/finetune       stage 4: with value heads, from stage 1 (train --resume)
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
// refuses a dynamics model distilled from another backbone).
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "base/atomic_file.h"
#include "base/file_read.h"
#include "base/new_directories.h"
#include "cli/bundled_data.h"
#include "cli/commands.h"
#include "cli/options.h"
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

const std::vector<Option>& pipeline_options() {
  static const std::vector<Option> table = {
      Option("config", Constraint::path(), "JSON config: the model, every stage's keys, and data and tasks").mandatory(),
      Option("output-dir", Constraint::path(), "directory of the stages (new, or an earlier pipeline's with --resume auto)").mandatory(),
      Option("data", Constraint::path(), "corpus: a text file or prepared directory (default: the config's data, else the bundled Tiny Shakespeare)"),
      Option("tasks", Constraint::path(), "evaluation tasks (default: the config's tasks, else the bundled ARC tasks)").many(),
      Option("resume", Constraint::word({"auto"}), "auto: continue the pipeline in --output-dir from the stage that was running"),
      Option("skip-backbone", Constraint::boolean(), "stage 1: reuse the backbone in DIR/backbone instead of training it"),
      Option("skip-finetune", Constraint::boolean(), "stage 4: reuse DIR/finetune if it holds a checkpoint, else evaluate the stage-1 backbone"),
      Option("skip-dynamics", Constraint::boolean(), "stage 2: reuse DIR/dynamics if it holds a dynamics model, else search with exact steps"),
      Option("backbone-steps", Constraint::integer(1), "stage 1: exactly this many steps (default: the config's backbone_epochs)"),
      Option("finetune-steps", Constraint::integer(1), "stage 4: exactly this many steps (default: finetune_epochs)"),
      Option("dynamics-steps", Constraint::integer(1), "stage 2: exactly this many dynamics training steps (default: dynamics_epochs)"),
      Option::for_key("dynamics-samples", "dynamics_samples", "stage 2: training transitions to collect"),
      Option("check-samples", Constraint::integer(1, 1 << 24), "stage 3: held-out transitions check-dynamics scores").with_default("1000"),
      Option("max-tasks", Constraint::integer(0, int64_t{1} << 30), "evaluation: only the first N tasks of every source (0: all)").with_default("0"),
      Option("modes", Constraint::explained(eval::mode_list_problem, eval::kModeListDescription), "evaluation: decoding modes to compare").with_default("greedy,mcts,mcts+inject"),
      Option("save-every", Constraint::integer(0), "training stages: steps between checkpoints (a resumed stage restarts from the last)").with_default("200"),
      Option("eval-every", Constraint::integer(0), "training stages: steps between validation passes (0: at the end)").with_default("0"),
      Option("threads", Constraint::integer(0, 4096), "CPU threads per rank (0: this rank's CPUs / the ranks on its node sharing them)").with_default("0"),
      Option("collective-timeout", Constraint::integer(0, dist::kMaxCollectiveTimeout.count()),
             "seconds a rank waits for one MPI collective (0: forever)")
          .with_default(std::to_string(dist::kDefaultCollectiveTimeout.count())),
  };
  return table;
}

using CommandFn = int (*)(int, char**);

std::string quoted(const std::string& word) {
  if (!word.empty() && word.find_first_of(" \t\n'\"$") == std::string::npos) return word;
  std::string q = "'";
  for (char c : word) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// A stage as a command line: printed, then run in this process.
int run_command(const std::string& name, CommandFn command, std::vector<std::string> args, bool root) {
  args.insert(args.begin(), name);
  if (root) {
    std::string line = "$ crsm_train";
    for (const auto& a : args) line += " " + quoted(a);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return command(static_cast<int>(args.size()), argv.data());
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

class Pipeline {
 public:
  Pipeline(const ParsedOptions& o, dist::Communicator& comm)
      : o_(o), comm_(comm), root_(comm.rank() == 0), dir_(fs::absolute(o.text("output-dir")).lexically_normal()) {
    config_file_ = fs::absolute(o.text("config")).lexically_normal().string();
    config_ = load_run_config(config_file_);
    o.apply_to(config_);
    data_ = o.has("data") ? fs::absolute(o.text("data")).string()
            : !config_.inputs.data.empty() ? config_.inputs.data
                                           : bundled_data("tinyshakespeare.txt", "--data");
    if (o.has("tasks"))
      for (const auto& t : o.texts("tasks")) tasks_.push_back(fs::absolute(t).string());
    else
      tasks_.push_back(!config_.inputs.tasks.empty() ? config_.inputs.tasks : bundled_data("arc/eval", "--tasks"));
  }

  int run() {
    if (!open_state()) return kExitPreempted;
    using Step = int (Pipeline::*)();
    for (const auto& [name, step] : {std::pair<const char*, Step>{"stage 1", &Pipeline::backbone},
                                     {"stage 4", &Pipeline::finetune}, {"stage 2", &Pipeline::dynamics},
                                     {"stage 3", &Pipeline::assemble}, {"the evaluation", &Pipeline::evaluate}}) {
      const std::string resume = std::string("pipeline: stopped in ") + name +
                                 ": rerun the same command with --resume auto to continue there";
      int status = kExitOk;
      try {
        status = (this->*step)();
      } catch (const Preempted& e) {
        throw Preempted(std::string(e.what()) + "\n" + resume);
      }
      if (status == kExitPreempted) say("%s\n", resume.c_str());
      if (status != kExitOk) return status;
    }
    std::string stages;
    for (const char* stage : {"backbone", "finetune", "dynamics", "model", "eval"})
      if (state_["done"].contains(stage))
        stages += (stages.empty() ? "" : ", ") + std::string(stage) + " " + duration(state_["done"][stage]["minutes"]);
    say("\npipeline: done in %s (stages, over all runs: %s): the model is %s, the report %s\n",
        duration(minutes_since(start_)).c_str(), stages.c_str(), model_.c_str(), eval_report_of(dir_).c_str());
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

  // What this pipeline was asked to do: an earlier one in the same directory must have
  // been asked the same to be continued.
  json plan() const {
    return {{"config_file", config_file_}, {"config", to_json(config_)}, {"data", data_}, {"tasks", tasks_},
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
      if (o_.is_set("skip-backbone") && !holds_checkpoint(dir_ / "backbone"))
        throw UsageError("--skip-backbone: " + (dir_ / "backbone").string() + " holds no checkpoint to reuse");
      json state = earlier ? base::read_json_file(file.string())
                           : json{{"format", 1}, {"plan", plan()}, {"done", json::object()}, {"started", json::object()}};
      if (earlier) check_same_plan(state.at("plan"));
      for (const auto& t : tasks_) data::read_tasks(t, o_.integer("max-tasks"));
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
    prepared_ = state_["prepared"];
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

  // Runs a stage's command, and records the stage done when it finished.
  int run_stage(const std::string& stage, Clock::time_point started, const std::string& command, CommandFn fn,
                const std::vector<std::string>& args) {
    const int status = run_command(command, fn, args, root_);
    if (status == kExitOk) mark_done(stage, started);
    return status;
  }

  // A stage directory an interrupted run left without a checkpoint holds nothing to
  // continue from (its command would refuse it): it starts again.
  void restart_if_unsaved(const fs::path& run_dir) {
    std::error_code ec;
    if (!fs::exists(run_dir, ec) || holds_checkpoint(run_dir)) return;
    comm_.barrier();
    if (root_) {
      std::printf("pipeline: %s holds no checkpoint of the interrupted run: starting it again\n", run_dir.c_str());
      fs::remove_all(run_dir);
    }
    comm_.barrier();
  }

  std::vector<std::string> common_flags() const {
    return {"--threads", std::to_string(o_.integer("threads")), "--collective-timeout",
            std::to_string(o_.integer("collective-timeout"))};
  }

  std::vector<std::string> training_flags(const fs::path& run_dir, const char* steps_flag) const {
    std::vector<std::string> a = {"--config", config_file_, "--data", prepared_, "--checkpoint-dir", run_dir.string(),
                                  "--device", config_.device, "--save-every", std::to_string(o_.integer("save-every")),
                                  "--eval-every", std::to_string(o_.integer("eval-every"))};
    if (o_.has(steps_flag)) a.insert(a.end(), {"--max-steps", std::to_string(o_.integer(steps_flag))});
    for (const auto& f : common_flags()) a.push_back(f);
    return a;
  }

  int backbone() {
    const fs::path run = dir_ / "backbone";
    backbone_ = run.string();
    say("\n== stage 1: backbone (language model) ==\n");
    if (o_.is_set("skip-backbone")) {
      std::vector<std::string> notes;
      const auto ckpt = checkpoint::resolve_checkpoint(run.string(), "--skip-backbone: " + run.string(), &notes);
      say("stage 1 skipped (--skip-backbone): reusing %s\n", ckpt.c_str());
      return kExitOk;
    }
    // Its inputs (config, corpus, steps) are the plan's, which a resumed run may not change.
    if (up_to_date("backbone", json::object(), run, checkpoint::RunDir(run.string()).checkpoints(), holds_checkpoint(run)))
      return say("stage 1 done in an earlier run: %s\n", run.c_str()), kExitOk;
    const auto started = Clock::now();
    restart_if_unsaved(run);
    auto args = training_flags(run, "backbone-steps");
    args.insert(args.end(), {"--no-value-loss", "--resume", "auto"});
    return run_stage("backbone", started, "train", train_command, args);
  }

  int finetune() {
    const fs::path run = dir_ / "finetune";
    say("\n== stage 4: fine-tuning with value heads (from stage 1) ==\n");
    if (o_.is_set("skip-finetune")) {
      if (holds_checkpoint(run)) {
        final_ = run.string();
        say("stage 4 skipped (--skip-finetune): reusing %s\n", run.c_str());
      } else {
        final_ = backbone_;
        say("stage 4 skipped (--skip-finetune): %s holds no checkpoint, so the model is the stage-1 backbone (its value "
            "heads untrained)\n", run.c_str());
      }
      return kExitOk;
    }
    final_ = run.string();
    if (up_to_date("finetune", {{"backbone", checkpoint_identity(backbone_)}}, run,
                   checkpoint::RunDir(run.string()).checkpoints(), holds_checkpoint(run)))
      return say("stage 4 done in an earlier run: %s\n", run.c_str()), kExitOk;
    const auto started = Clock::now();
    restart_if_unsaved(run);
    auto args = training_flags(run, "finetune-steps");
    args.insert(args.end(), {"--resume", holds_checkpoint(run) ? "auto" : backbone_});
    return run_stage("finetune", started, "train", train_command, args);
  }

  int dynamics() {
    const fs::path out = dir_ / "dynamics";
    say("\n== stage 2: latent dynamics, distilled from %s ==\n", final_.c_str());
    if (o_.is_set("skip-dynamics")) {
      std::error_code ec;
      dynamics_ = fs::exists(checkpoint::RunDir(out.string()).dynamics(), ec) ? out.string() : "";
      if (dynamics_.empty())
        say("stage 2 skipped (--skip-dynamics): %s holds no dynamics model, so the search uses exact backbone steps\n",
            out.c_str());
      else
        say("stage 2 skipped (--skip-dynamics): reusing %s\n", checkpoint::RunDir(out.string()).dynamics().c_str());
      return kExitOk;
    }
    dynamics_ = out.string();
    // A dynamics model describes one backbone: distilled from another, it is distilled again.
    const std::string dynamics_file = checkpoint::RunDir(out.string()).dynamics();
    std::error_code ec;
    if (up_to_date("dynamics", {{"backbone", checkpoint_identity(final_)}}, out, dynamics_file, fs::exists(dynamics_file, ec)))
      return say("stage 2 done in an earlier run: %s\n", out.c_str()), kExitOk;
    const auto started = Clock::now();
    std::vector<std::string> args = {"--model-path", final_, "--output-path", out.string(), "--data", prepared_,
                                     "--config", config_file_, "--num-samples", std::to_string(config_.dynamics.samples),
                                     "--save-every", std::to_string(o_.integer("save-every"))};
    if (o_.has("dynamics-steps")) args.insert(args.end(), {"--max-steps", std::to_string(o_.integer("dynamics-steps"))});
    for (const auto& f : common_flags()) args.push_back(f);
    return run_stage("dynamics", started, "distill", distill_command, args);
  }

  // One process's work (it writes one checkpoint): rank 0 runs it, the others wait.
  int assemble() {
    const fs::path out = dir_ / "model";
    say("\n== stage 3: backbone + dynamics in one checkpoint, and the dynamics' quality ==\n");
    if (dynamics_.empty()) {
      model_ = final_;
      say("stage 3 skipped: no dynamics model; the evaluation searches %s with exact backbone steps\n", final_.c_str());
      return kExitOk;
    }
    model_ = out.string();
    const json key = {{"backbone", checkpoint_identity(final_)},
                      {"dynamics", file_identity(checkpoint::RunDir(dynamics_).dynamics())},
                      {"--check-samples", o_.integer("check-samples")}};
    if (up_to_date("model", key, out, checkpoint::RunDir(out.string()).checkpoints(), holds_checkpoint(out)))
      return say("stage 3 done in an earlier run: %s\n", out.c_str()), kExitOk;
    const auto started = Clock::now();
    const std::string status = dist::run_on_root(comm_, [&] {
      int s = kExitOk;
      if (!holds_checkpoint(out))
        s = run_command("assemble", assemble_command, {"--backbone", final_, "--dynamics", dynamics_, "--output", out.string()}, true);
      if (s == kExitOk)
        s = run_command("check-dynamics", check_dynamics_command,
                        {"--model", out.string(), "--data", prepared_, "--samples", std::to_string(o_.integer("check-samples")),
                         "--threads", std::to_string(o_.integer("threads"))}, true);
      return std::to_string(s);
    });
    if (std::stoi(status) != kExitOk) return std::stoi(status);
    mark_done("model", started);
    return kExitOk;
  }

  int evaluate() {
    const fs::path out = eval_report_of(dir_);
    say("\n== planning evaluation of %s ==\n", model_.c_str());
    // The tasks and the search's settings are the plan's; these may change on a resume.
    const json key = {{"model", checkpoint_identity(model_)}, {"--modes", o_.text("modes")},
                      {"--max-tasks", o_.integer("max-tasks")}};
    std::error_code ec;
    if (up_to_date("eval", key, out.parent_path(), out.string(), fs::exists(out, ec))) {
      say("evaluation done in an earlier run: %s\n\n%s", out.c_str(),
          eval::format_eval_report(base::read_json_file(out.string())).c_str());
      return kExitOk;
    }
    const auto started = Clock::now();
    std::vector<std::string> args = {"--model", model_, "--output", out.string(), "--force", "--device", config_.device,
                                     "--max-tasks", std::to_string(o_.integer("max-tasks")), "--modes", o_.text("modes")};
    args.push_back("--tasks");
    for (const auto& t : tasks_) args.push_back(t);
    for (const auto& f : common_flags()) args.push_back(f);
    return run_stage("eval", started, "eval", eval_command, args);
  }

  const ParsedOptions& o_;
  dist::Communicator& comm_;
  const bool root_;
  const fs::path dir_;
  std::string config_file_, data_, prepared_;
  std::vector<std::string> tasks_;
  RunConfig config_;
  json state_;
  Clock::time_point start_;
  std::string backbone_, final_, dynamics_, model_;  // what the later stages read
};

}  // namespace

int pipeline_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train pipeline --config FILE --output-dir DIR [options]",
                                    pipeline_options());
  if (!parsed) return 0;
  const auto& rt = dist::runtime();
  auto comm = dist::make_communicator(rt, c10::Device(c10::kCPU), std::chrono::seconds(parsed->integer("collective-timeout")));
  return Pipeline(*parsed, *comm).run();
}

}  // namespace crsm::cli
