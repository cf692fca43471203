#include "cli/pipeline_stages.h"

#include "cli/session.h"
#include "cli/stages.h"
#include "dist/communicator.h"
#include "eval/planning_eval.h"

namespace crsm::cli {

const std::vector<Option>& pipeline_options() {
  static const std::vector<Option> table = with_config_flags(with_session_flags({
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
      Option("rollout-tasks", Constraint::path(), "stage 4 with value_target outcome: tasks with answers to sample rollouts on (default: the config's rollout_tasks)"),
      Option("rollout-max-tasks", Constraint::integer(0, int64_t{1} << 30), "stage 4 rollouts: only the first N tasks (0: all)").with_default("0"),
      Option("rollout-samples", Constraint::integer(1, eval::kMaxSamples), "stage 4 rollouts: answers sampled per test output").with_default("16"),
      Option("outcome-epochs", config_constraint("finetune_epochs"), "stage 4 outcome values: epochs over the rollouts").with_default("2"),
      Option("outcome-steps", Constraint::integer(1), "stage 4 outcome values: exactly this many steps (default: --outcome-epochs)"),
      Option("outcome-batch-size", config_constraint("batch_size"), "stage 4 outcome values: rollouts per optimizer step").with_default("32"),
      Option("outcome-lr", config_constraint("lr"), "stage 4 outcome values: peak learning rate of the heads").with_default("3e-3"),
      Option("check-samples", Constraint::integer(1, 1 << 24), "stage 3: held-out transitions check-dynamics scores").with_default("1000"),
      Option("max-tasks", Constraint::integer(0, int64_t{1} << 30), "evaluation: only the first N tasks of every source (0: all)").with_default("0"),
      Option("modes", Constraint::explained(eval::mode_list_problem, eval::kModeListDescription), "evaluation: decoding modes to compare").with_default("greedy,vote,logprob,value,mcts,mcts+inject,pass"),
      Option("save-every", Constraint::integer(0), "training stages: steps between checkpoints (a resumed stage restarts from the last)").with_default("200"),
      Option("eval-every", Constraint::integer(0), "training stages: steps between validation passes (0: at the end)").with_default("0"),
      Option("no-tensorboard", Constraint::boolean(), "training and distillation stages: write no TensorBoard event files"),
  }));
  return table;
}

namespace {

// The flags every stage of several ranks takes from the pipeline's own.
CommandLine& add_session_flags(const ParsedOptions& o, CommandLine& line) {
  return line.set("threads", o.integer("threads")).set("collective-timeout", o.integer("collective-timeout"));
}

// The pipeline's --set settings of config keys, for the stages that read the config file
// and apply them over it; but not of `left_out`, a key the stage's own flag sets.
CommandLine& add_settings(const ParsedOptions& o, CommandLine& line, const std::string& left_out = "") {
  std::vector<std::string> settings;
  if (o.has("set"))
    for (const auto& s : o.texts("set"))
      if (left_out.empty() || s.rfind(left_out + "=", 0) != 0) settings.push_back(s);
  if (!settings.empty()) line.set("set", settings);
  return add_session_flags(o, line);
}

// A training stage; its value target is its own (the language-model stages learn
// next-token values whatever the config says: outcome values come after them, from
// their rollouts).
CommandLine training_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& run,
                          const char* steps_flag, const char* value_target) {
  CommandLine line("train", train_options());
  line.set("config", in.config_file).set("checkpoint-dir", run).set("device", in.device);
  line.set("save-every", o.integer("save-every")).set("eval-every", o.integer("eval-every"));
  if (o.has(steps_flag)) line.set("max-steps", o.integer(steps_flag));
  if (o.is_set("no-tensorboard")) line.set("no-tensorboard");
  line.set("value-target", value_target);
  return add_settings(o, line, "value_target");
}

}  // namespace

CommandLine backbone_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& run) {
  auto line = training_line(o, in, run, "backbone-steps", "next_token");
  line.set("data", in.prepared).set("no-value-loss").set("resume", "auto");
  return line;
}

CommandLine finetune_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& run,
                          const std::string& resume) {
  auto line = training_line(o, in, run, "finetune-steps", "next_token");
  line.set("data", in.prepared).set("resume", resume);
  return line;
}

CommandLine rollouts_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& model,
                          const std::string& out) {
  CommandLine line("rollouts", rollouts_options());
  line.set("model", model).set("tasks", std::vector<std::string>{in.rollout_tasks}).set("output-path", out);
  line.set("max-tasks", o.integer("rollout-max-tasks")).set("samples", o.integer("rollout-samples"));
  line.set("device", in.device);
  return add_session_flags(o, line);
}

CommandLine outcome_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& run,
                         const std::string& rollouts, const std::string& resume) {
  auto line = training_line(o, in, run, "outcome-steps", "outcome");
  line.set("rollouts", rollouts).set("resume", resume);
  line.set("epochs", o.integer("outcome-epochs")).set("batch-size", o.integer("outcome-batch-size"));
  line.set("lr", o.value_text("outcome-lr"));
  return line;
}

CommandLine distill_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& model,
                         const std::string& out, int64_t samples) {
  CommandLine line("distill", distill_options());
  line.set("model-path", model).set("output-path", out).set("data", in.prepared).set("config", in.config_file);
  line.set("num-samples", samples).set("save-every", o.integer("save-every"));
  if (o.has("dynamics-steps")) line.set("max-steps", o.integer("dynamics-steps"));
  if (o.is_set("no-tensorboard")) line.set("no-tensorboard");
  return add_settings(o, line);
}

CommandLine assemble_line(const std::string& model, const std::string& dynamics, const std::string& out) {
  CommandLine line("assemble", assemble_options());
  line.set("backbone", model).set("dynamics", dynamics).set("output", out);
  return line;
}

CommandLine check_dynamics_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& model) {
  CommandLine line("check-dynamics", check_dynamics_options());
  line.set("model", model).set("data", in.prepared).set("samples", o.integer("check-samples"));
  line.set("threads", o.integer("threads"));
  return line;
}

CommandLine eval_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& planner,
                      const std::string& report) {
  CommandLine line("eval", eval_options());
  line.set("model", planner).set("output", report).set("force").set("device", in.device);
  line.set("max-tasks", o.integer("max-tasks")).set("modes", o.text("modes")).set("tasks", in.tasks);
  return add_session_flags(o, line);
}

}  // namespace crsm::cli
