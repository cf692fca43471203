// crsm_train eval: the planning evaluation across ranks (SPEC §9). Every rank loads the
// model and reads the tasks; the items are dealt out over the ranks and rank 0 prints
// the report and writes it as JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include "base/atomic_file.h"
#include "cli/commands.h"
#include "cli/session.h"
#include "cli/stages.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "cli/search_setup.h"
#include "cli/task_flags.h"
#include "data/tokenizer.h"
#include "checkpoint/store.h"
#include "checkpoint/run_dir.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "eval/planning_eval.h"
#include "checkpoint/training_checkpoint.h"

namespace crsm::cli {

const std::vector<Option>& eval_options() {
  static const std::vector<Option> table = with_session_flags(with_search_flags(with_task_flags({
      Option("model", Constraint::path(), "checkpoint (assembled: plans with its dynamics), or a run directory").mandatory(),
      Option("modes", Constraint::explained(eval::mode_list_problem, eval::kModeListDescription), "decoding modes to compare").with_default("greedy,mcts,mcts+inject"),
      Option("samples", Constraint::integer(1, eval::kMaxSamples), "answers sampled per test output for vote, logprob, value, value-vote and pass without @N").with_default("16"),
      Option("temperature", Constraint::number(1e-3, 100), "sampling temperature of the sampling modes").with_default("1"),
      Option("budget", Constraint::integer(1, eval::kMaxSamples), "every mode at about this many times greedy's compute: N of the sampling modes, and budget - 1 simulations per token for mcts (modes then take no @N)"),
      Option("output", Constraint::path(), "the report as JSON (default: eval.json in the model's run directory)"),
      Option("force", Constraint::boolean(), "replace --output if it exists"),
      Option("exact", Constraint::boolean(), "search with exact backbone steps even when the model has a dynamics model"),
      Option("device", config_constraint("device"), "cpu | cuda | cuda:N (cuda: the GPU of the local rank)").with_default("cpu"),
  })));
  return table;
}

namespace {

namespace fs = std::filesystem;

// Where the report goes by default: eval.json in the checkpoint's run, or beside a
// checkpoint outside a run (never inside one: the checkpoint's files are verified by hash).
std::string default_report(const std::string& dir) {
  const auto run = checkpoint::RunDir::of_checkpoint(dir);
  return (run ? *run : checkpoint::RunDir(fs::path(dir).lexically_normal().parent_path().string())).eval_report();
}

eval::EvalSetup make_setup(const ParsedOptions& o, const std::string& dir, const RunConfig& config,
                           model::Backbone model, const data::Tokenizer& tokenizer, const torch::Device& device) {
  eval::EvalSetup s;
  s.backbone = model;
  s.value_target = config.model.value_target;
  s.tokenizer = &tokenizer;
  s.modes = eval::eval_modes(o.text("modes"), o.integer("samples"));
  // The dynamics model is loaded only when a mode searches.
  const bool searching = std::any_of(s.modes.begin(), s.modes.end(), [](const eval::EvalMode& m) { return m.search; });
  const Planner planner = searching ? make_planner(dir, model, device, o.is_set("exact")) : Planner{nullptr, "none"};
  s.planner = planner.model;
  s.exact_planner = planner.name == "exact";
  s.search = search_options(o, config);
  if (o.has("budget")) {
    if (o.text("modes").find('@') != std::string::npos)
      throw UsageError("--budget " + std::to_string(o.integer("budget")) + " sets every sampling mode's N: --modes " +
                       o.text("modes") + " must not give one with @N");
    s.search.n_simulations = eval::apply_budget(s.modes, o.integer("budget"));
  }
  s.sampling.temperature = o.number("temperature");
  s.injection_rate = config.search.injection_rate;
  s.delta_decay = config.search.delta_decay;
  s.max_prompt_tokens = o.integer("max-prompt-tokens");
  s.max_new_tokens = max_new_tokens(o);
  s.stop_requested = dist::preemption_signalled;
  s.describe = {{"model", dir},           {"tasks", o.texts("tasks")},       {"planner", planner.name},
                {"modes", o.text("modes")}, {"n_simulations", s.search.n_simulations}, {"c_puct", s.search.c_puct},
                {"root_choice", config.search.root_choice}, {"normalize_q", config.search.normalize_q},
                {"reuse_subtree", config.search.reuse_subtree},
                {"top_k", s.search.top_k}, {"leaf_batch", s.search.leaf_batch}, {"injection_rate", s.injection_rate},
                {"max_prompt_tokens", s.max_prompt_tokens}, {"max_new_tokens", o.value("max-new-tokens")},
                {"temperature", s.sampling.temperature}, {"budget", o.has("budget") ? o.value("budget") : nlohmann::json()}};
  return s;
}

}  // namespace

nlohmann::json run_eval(const ParsedOptions& o, Session& session) {
  const auto& rt = session.runtime;
  std::vector<std::string> skipped;
  const std::string dir = checkpoint::resolve_checkpoint(o.text("model"), "--model", &skipped);
  const std::string output = o.has("output") ? o.text("output") : default_report(dir);
  check_output_file("--output", output, o.is_set("force"), checkpoint_inputs(dir, o.text("model")));
  const auto items = read_task_items(o);
  auto tokenizer = data::load_tokenizer(dir);
  RunConfig config;
  auto model = checkpoint::load_checkpoint_model(dir, &config);
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, dir);
  o.apply_to(config);
  model->to(session.device);
  model->eval();
  for (const auto& note : skipped)
    if (rt.is_root()) std::fprintf(stderr, "eval: %s\n", note.c_str());
  const auto setup = make_setup(o, dir, config, model, *tokenizer, session.device);
  const auto report = eval::run_planning_eval(setup, items, *session.comm);
  if (!rt.is_root()) return report;
  // Written first: the report outlives anything that goes wrong printing it.
  write_output_file(output, [&] { base::write_file_atomically(output, eval::dump_text(report, 1) + "\n"); });
  std::fputs(eval::format_eval_report(report).c_str(), stdout);
  std::printf("eval: wrote %s\n", output.c_str());
  return report;
}

int eval_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train eval --model DIR --tasks FILE|DIR... [options]",
                                    eval_options());
  if (!parsed) return 0;
  Session session = start_session(parsed->text("device"), *parsed, "eval");
  run_eval(*parsed, session);
  return 0;
}

}  // namespace crsm::cli
