#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/run_record.h"
#include "cli/session.h"
#include "cli/stages.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "cli/profile_flags.h"
#include "checkpoint/store.h"
#include "config/run_config.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "dist/zero_policy.h"
#include "distill/rollouts.h"
#include "checkpoint/training_checkpoint.h"
#include "train/mixed_precision.h"
#include "train/options.h"
#include "train/trainer.h"

namespace crsm::cli {
namespace {

}  // namespace

const std::vector<Option>& train_options() {
  const train::OptimizerOptions optimizer;
  const train::CadenceOptions cadence;
  const train::ParallelOptions parallel;
  const train::TrainOptions train;
  static const std::vector<Option> table = with_config_flags(with_session_flags(with_profile_flags(with_tensorboard_flags({
      Option("config", Constraint::path(), "JSON config (SPEC §3 keys); defaults for everything below"),
      Option("data", Constraint::path(), "prepared data directory (crsm_train prepare), or a text file to prepare with the byte tokenizer (required unless --value-target outcome)"),
      Option::for_key("value-target", "value_target", "what the value heads learn: next_token (stage 4 with the language model) | outcome (the heads alone, on --rollouts, from the --resume backbone)"),
      Option("rollouts", Constraint::path(), "value_target outcome: the rollout file (crsm_train rollouts) the value heads learn from"),
      Option("checkpoint-dir", Constraint::path(), "run directory: metrics.jsonl, tensorboard/, config.json, checkpoints/").mandatory(),
      Option("resume", Constraint::path(), "auto | checkpoint dir | run dir; a stage-1 checkpoint starts stage 4 (weights only)"),
      Option("no-value-loss", Constraint::boolean(), "stage 1: train the language model alone (default: with value heads, stage 4)"),
      Option("epochs", config_constraint("backbone_epochs"), "epochs over the training split (config: backbone_epochs / finetune_epochs)"),
      Option("max-steps", Constraint::integer(1), "stop after exactly this many optimizer steps (overrides --epochs)"),
      Option::for_key("batch-size", "batch_size", "global batch (sequences per optimizer step)"),
      Option::for_key("seq-len", "seq_len", "tokens per sequence"),
      Option::for_key("vocab-size", "vocab_size", "model vocabulary; must equal the tokenizer's"),
      Option("lr", config_constraint("lr"), "peak learning rate (config: lr, or finetune_lr with value loss)"),
      Option("min-lr-ratio", Constraint::number(0, 1), "final learning rate as a fraction of the peak").with_default(default_text(optimizer.min_lr_ratio)),
      Option("warmup-steps", Constraint::integer(0).or_word("auto"), "linear warm-up steps (auto: 5% of the run, at most 200)").with_default("auto"),
      Option("weight-decay", Constraint::number(0, 10), "AdamW weight decay on matrices").with_default(default_text(optimizer.weight_decay)),
      Option("grad-clip", Constraint::number(0, INFINITY), "global gradient-norm clip (0: off)").with_default(default_text(optimizer.grad_clip)),
      Option("grad-accum", Constraint::integer(1, 1 << 20), "micro-batches per optimizer step (must divide the batch)").with_default(default_text(parallel.grad_accum)),
      Option("value-weight", Constraint::number(0, 1e6), "weight of the value-head loss").with_default(default_text(train.value_weight)),
      Option("eval-every", Constraint::integer(0), "steps between validation passes (0: only at the end)").with_default(default_text(cadence.eval_every)),
      Option("eval-batches", Constraint::integer(0, 1 << 24), "validation batches per pass (0: the whole split)").with_default(default_text(train.eval_batches)),
      Option("save-every", Constraint::integer(0), "steps between checkpoints (0: only at the end)").with_default(default_text(cadence.save_every)),
      Option("keep-last", Constraint::integer(0, 1 << 30), "checkpoints kept (0: all)").with_default(default_text(int64_t{cadence.keep_last})),
      Option("log-every", Constraint::integer(1), "steps between progress lines").with_default(default_text(cadence.log_every)),
      Option::for_key("seed", "seed", "seed of initialisation and data order"),
      Option::for_key("device", "device", "cpu | cuda | cuda:N"),
      Option::for_key("zero-stage", "zero_stage", "0 replicated | 1 optimizer state sharded | 2 gradients sharded too | 3 parameters sharded too (gathered a block at a time)"),
      Option("bucket-mb", Constraint::number(1e-3, 4096), "gradient bucket size in MiB for the overlapped all-reduce").with_default(default_text(static_cast<double>(parallel.bucket_bytes >> 20))),
      Option("precision", Constraint::word({"fp32", "bf16"}), "fp32 | bf16 (autocast forward passes to bfloat16; weights, optimizer and losses stay fp32)").with_default("fp32"),
      Option("activation-checkpointing", Constraint::boolean(), "keep only each block's input for backward and recompute the block there (memory for a forward pass)"),
      Option("no-prefetch", Constraint::boolean(), "zero stage 3: gather each unit only when it runs, not while the previous one computes (for comparison)"),
      Option("no-batch-split", Constraint::boolean(), "CPU: spread each operation over the rank's threads instead of giving each thread its own share of every micro-batch (for comparison)"),
  }))));
  return table;
}

namespace {

// How the step is spread: the ZeRO policy chosen once from the config's zero_stage.
train::ParallelOptions parallel_options(const ParsedOptions& o, const RunConfig& config) {
  train::ParallelOptions p;
  p.zero = dist::ZeroPolicy::for_stage(static_cast<int>(config.zero_stage));
  p.bucket_bytes = static_cast<int64_t>(o.number("bucket-mb") * (1 << 20));
  p.prefetch = !o.is_set("no-prefetch");
  p.batch_split = !o.is_set("no-batch-split");
  p.grad_accum = o.integer("grad-accum");
  p.precision = train::parse_precision(o.text("precision"));
  if (!p.prefetch && !p.zero.sharded_parameters())
    throw UsageError("--no-prefetch applies to --zero-stage 3 only (this run has zero stage " +
                     std::to_string(p.zero.stage) + ")");
  return p;
}

// Stage 1, stage 4, or stage 4 on outcomes, from the flags and the config's value target;
// each reads its own data flag.
checkpoint::Stage training_stage(const ParsedOptions& o, const RunConfig& config) {
  const bool outcome = config.model.value_target == model::ValueTarget::kOutcome;
  if (outcome && o.is_set("no-value-loss"))
    throw UsageError("--no-value-loss trains no value heads, but value_target outcome trains nothing else");
  if (outcome != o.has("rollouts"))
    throw UsageError(outcome ? "value_target outcome needs --rollouts (a file written by crsm_train rollouts)"
                             : "--rollouts " + o.text("rollouts") + " is read with --value-target outcome only");
  if (outcome == o.has("data"))
    throw UsageError(outcome ? "--data " + o.text("data") + ": value_target outcome learns from --rollouts, not text"
                             : "--data is required");
  if (outcome) return checkpoint::Stage::kOutcome;
  return o.is_set("no-value-loss") ? checkpoint::Stage::kBackbone : checkpoint::Stage::kFinetune;
}

train::TrainOptions training_options(const ParsedOptions& o, const RunConfig& config) {
  train::TrainOptions t;
  t.stage = training_stage(o, config);
  const bool value_loss = checkpoint::trains_value_heads(t.stage);
  t.run_dir = o.text("checkpoint-dir");
  if (o.has("data")) t.data = o.text("data");
  if (o.has("rollouts")) t.rollouts = o.text("rollouts");
  if (o.has("resume")) t.resume = o.text("resume");
  t.length.epochs = o.has("epochs") ? o.integer("epochs")
                                    : (value_loss ? config.train.finetune_epochs : config.train.backbone_epochs);
  if (o.has("max-steps")) t.length.max_steps = o.integer("max-steps");
  if (t.length.epochs == 0 && t.length.max_steps == 0)
    throw UsageError("nothing to do: --epochs (or the config's " +
                     std::string(value_loss ? "finetune_epochs" : "backbone_epochs") +
                     ") is 0 and --max-steps is not given");
  t.length.warmup_steps = o.value("warmup-steps").is_string() ? -1 : o.integer("warmup-steps");
  t.optimizer = {o.has("lr") ? o.number("lr") : (value_loss ? config.train.finetune_lr : config.train.lr),
                 o.number("min-lr-ratio"), o.number("weight-decay"), o.number("grad-clip")};
  t.cadence = {o.integer("log-every"), o.integer("eval-every"), o.integer("save-every"),
               static_cast<int>(o.integer("keep-last"))};
  t.parallel = parallel_options(o, config);
  t.profile = profile_options(o);
  t.value_weight = o.number("value-weight");
  t.eval_batches = o.integer("eval-batches");
  t.activation_checkpointing = o.is_set("activation-checkpointing");
  return t;
}

// What --resume reads when it names another run or checkpoint (a checkpoint of the run
// being continued, inside --checkpoint-dir, is this run's own), and the collection
// --rollouts belongs to.
std::vector<Input> read_inputs(const ParsedOptions& o) {
  namespace fs = std::filesystem;
  std::vector<Input> inputs;
  if (o.has("rollouts")) {
    // A master written by `rollouts` stands for its directory, where its rank files lie.
    const fs::path file = fs::absolute(o.text("rollouts")).lexically_normal();
    const bool master = distill::rollout_master_file(file.parent_path().string()) == file.string();
    inputs.push_back({Input::Kind::kRollouts, master ? file.parent_path().string() : file.string()});
  }
  if (!o.has("resume") || o.text("resume") == "auto") return inputs;
  const fs::path spec = fs::absolute(o.text("resume")).lexically_normal();
  const fs::path run = fs::absolute(o.text("checkpoint-dir")).lexically_normal();
  const fs::path relative = spec.lexically_relative(run);
  if (!relative.empty() && *relative.begin() != "..") return inputs;
  const auto resumed = checkpoint::looks_like_checkpoint(spec.string())
                           ? checkpoint_inputs(spec.string())
                           : std::vector<Input>{{Input::Kind::kRun, spec.string()}};
  inputs.insert(inputs.end(), resumed.begin(), resumed.end());
  return inputs;
}

}  // namespace

train::TrainResult run_train(const ParsedOptions& o, RunConfig config, Session& session) {
  o.apply_to(config);
  train::TrainOptions t = training_options(o, config);
  t.run_info = run_record("train", o, config, session);
  const std::vector<Input> inputs = read_inputs(o);
  check_output_directory("--checkpoint-dir", t.run_dir, inputs);
  t.tensorboard_dir = tensorboard_directory(o, t.run_dir, inputs);
  const auto result = train::run_training(config, t, *session.comm);
  if (result.exit_status == kExitOk && result.steps_run > 0 && session.runtime.is_root())
    std::printf("train: done, %lld steps, val loss %.4f, checkpoint %s\n",
                static_cast<long long>(result.steps), result.final_val_loss,
                result.last_checkpoint.c_str());
  return result;
}

int train_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train train --checkpoint-dir DIR --data DATA [--config FILE] [options]",
                                    train_options());
  if (!parsed) return 0;
  const ParsedOptions& o = *parsed;
  const RunConfig file = o.has("config") ? load_run_config(o.text("config")) : RunConfig{};
  RunConfig config = file;
  o.apply_to(config);
  if (o.is_set("print-config")) return print_config(config);
  Session session = start_session(config.device, o, "train");
  return run_train(o, file, session).exit_status;
}

}  // namespace crsm::cli
