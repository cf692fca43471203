// crsm_train rollouts (SPEC §9): the model's own answers to training tasks, each labelled
// by exact match against the known answer, streamed to HDF5 (a file per rank, a master
// joining them) for training outcome values. Rerunning the same command resumes it.
#include <cstdio>

#include <torch/torch.h>

#include "base/error.h"
#include "checkpoint/assembled_checkpoint.h"
#include "checkpoint/store.h"
#include "checkpoint/training_checkpoint.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "cli/session.h"
#include "cli/stages.h"
#include "cli/task_flags.h"
#include "data/tokenizer.h"
#include "distill/rollouts.h"
#include "dist/runtime.h"
#include "eval/planning_eval.h"

namespace crsm::cli {

const std::vector<Option>& rollouts_options() {
  static const std::vector<Option> table = with_session_flags(with_task_flags({
      Option("model", Constraint::path(), "checkpoint, or a run directory (its newest complete checkpoint)").mandatory(),
      Option("output-path", Constraint::path(), "directory: rollouts/rankNNNNN.h5 and the master rollouts.h5").mandatory(),
      Option("samples", Constraint::integer(1, eval::kMaxSamples), "answers sampled per test output").with_default("16"),
      Option("temperature", Constraint::number(1e-3, 100), "sampling temperature").with_default("1"),
      Option("compression", Constraint::word({"none", "gzip"}), "HDF5 filter of the rollout files").with_default("none"),
      Option("chunk-rows", Constraint::integer(1, 1 << 20), "rows per HDF5 chunk; files are flushed every chunk").with_default("64"),
      Option("device", config_constraint("device"), "cpu | cuda | cuda:N (cuda: the GPU of the local rank)").with_default("cpu"),
  }));
  return table;
}

namespace {

distill::RolloutOptions rollout_options(const ParsedOptions& o) {
  distill::RolloutOptions r;
  r.samples = o.integer("samples");
  r.sampling.temperature = o.number("temperature");
  r.max_prompt_tokens = o.integer("max-prompt-tokens");
  r.max_new_tokens = max_new_tokens(o);
  r.dir = o.text("output-path");
  r.writer.chunk_rows = o.integer("chunk-rows");
  r.writer.compression = data::parse_compression(o.text("compression"));
  return r;
}

// A chunk of --chunk-rows rows must fit HDF5's 4 GiB: refused before any work, naming
// what makes the rows wide.
void check_chunk_fits(const distill::RolloutPlan& plan, const distill::RolloutOptions& options) {
  const int64_t most = data::max_chunk_rows(data::rollout_format().columns(data::rollout_attributes(plan.schema)));
  if (options.writer.chunk_rows > most)
    throw UsageError("--chunk-rows " + std::to_string(options.writer.chunk_rows) + ": rows of " +
                     std::to_string(plan.schema.prompt_width) + " prompt and " + std::to_string(plan.schema.answer_width) +
                     " answer tokens (--max-new-tokens) fit at most " + std::to_string(most) +
                     " to an HDF5 chunk of 4 GiB");
}

}  // namespace

std::string run_rollouts(const ParsedOptions& o, Session& session) {
  const auto& rt = session.runtime;
  std::vector<std::string> skipped;
  const std::string dir = checkpoint::resolve_checkpoint(o.text("model"), "--model", &skipped);
  const auto options = rollout_options(o);
  check_output_directory("--output-path", options.dir, checkpoint_inputs(dir, o.text("model")));
  const auto items = read_task_items(o);
  auto tokenizer = data::load_tokenizer(dir);
  RunConfig config;
  auto model = checkpoint::load_checkpoint_model(dir, &config);
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, dir);
  model->to(session.device);
  model->eval();
  for (const auto& note : skipped)
    if (rt.is_root()) std::fprintf(stderr, "rollouts: %s\n", note.c_str());
  auto& comm = *session.comm;
  const auto plan = distill::plan_rollouts(items, *tokenizer, config.model.vocab_size, checkpoint::backbone_sha256(dir),
                                           options, comm.world_size());
  check_chunk_fits(plan, options);
  distill::check_rollouts_resumable(plan, options, comm);
  dist::stop_if_preempted_on_any_rank(comm, "rollouts", "before writing anything: rerun the command");
  if (rt.is_root())
    std::printf("rollouts: %lld test outputs (%lld skipped: prompt over --max-prompt-tokens), %lld samples each, "
                "temperature %g, on %d ranks, from %s\n",
                static_cast<long long>(items.size()), static_cast<long long>(items.size() - plan.sampled_items()),
                static_cast<long long>(options.samples), options.sampling.temperature, comm.world_size(), dir.c_str());
  const auto r = distill::collect_rollouts(model, *tokenizer, items, plan, options, comm);
  if (r.preempted)
    throw Preempted("rollouts: preempted by " + dist::signal_name(dist::preemption_signal()) +
                    "; every flushed row is kept: rerun the same command to resume");
  if (rt.is_root()) {
    const auto s = distill::summarize_rollouts(r.master);
    std::printf("rollouts: %lld rows in %s: %lld right (%.1f %%); %lld of %lld test outputs have a right answer; "
                "%lld rows kept from an earlier run on rank 0; %.1f s, %.1f rows/s on rank 0\n",
                static_cast<long long>(s.rows), r.master.c_str(), static_cast<long long>(s.right),
                s.rows ? 100.0 * s.right / s.rows : 0.0, static_cast<long long>(s.items_solved),
                static_cast<long long>(s.items), static_cast<long long>(r.rows_resumed), r.seconds,
                r.rows_written / std::max(r.seconds, 1e-9));
  }
  return r.master;
}

int rollouts_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv,
                                    "usage: crsm_train rollouts --model DIR --tasks FILE|DIR... --output-path DIR [options]",
                                    rollouts_options());
  if (!parsed) return 0;
  Session session = start_session(parsed->text("device"), *parsed, "rollouts");
  run_rollouts(*parsed, session);
  return 0;
}

}  // namespace crsm::cli
