#include "train/trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>

#include "base/new_directories.h"
#include "data/batch_sampler.h"
#include "data/data_error.h"
#include "data/prepared_corpus.h"
#include "data/tokenizer.h"
#include "checkpoint/store.h"
#include "checkpoint/resume_across_ranks.h"
#include "checkpoint/run_dir.h"
#include "dist/runtime.h"
#include "model/parameter_count.h"
#include "train/lm_loss.h"
#include "train/lm_objective.h"
#include "train/outcome_objective.h"
#include "config/memory_plan.h"
#include "checkpoint/training_checkpoint.h"
#include "train/trainable.h"
#include "train/training_data.h"

namespace crsm::train {
namespace {

namespace fs = std::filesystem;

// A fresh run (no --resume) never writes over an earlier run's history: its
// checkpoints, or the metrics and config of a run that died before its first save.
void check_fresh_run_directory(const checkpoint::RunDir& run) {
  const std::string dir = "--checkpoint-dir " + run.path();
  if (run.holds_checkpoints())
    throw UsageError(dir + " already holds checkpoints: pass --resume auto to continue that run, or choose "
                           "another directory");
  for (const std::string& file : {run.metrics(), run.config()})
    if (fs::exists(file))
      throw UsageError(dir + " holds an earlier run's " + fs::path(file).filename().string() +
                       " but no checkpoint: choose another directory, or remove that run to start over");
}

TrainResult preempted_result(int64_t step) {
  TrainResult r;
  r.exit_status = kExitPreempted;
  r.steps = step;
  return r;
}

// This rank's share of the validation windows of the split, on the device.
at::Tensor validation_windows(const data::TokenSplit& val, const std::string& data_dir, int64_t seq_len,
                              int64_t max_windows, int rank, int world, torch::Device device) {
  std::vector<int64_t> starts;
  try {
    starts = data::eval_window_starts(val.size(), seq_len, max_windows);
  } catch (const data::DataError&) {
    throw data::DataError("--seq-len " + std::to_string(seq_len) + " is longer than the validation split of " +
                          data_dir + " (" + std::to_string(val.size()) + " tokens)");
  }
  const auto [lo, hi] = dist::rank_share(static_cast<int64_t>(starts.size()), rank, world);
  starts = std::vector<int64_t>(starts.begin() + lo, starts.begin() + hi);
  return data::gather_windows(val, starts, seq_len).to(device);
}

// The rows of the global batch this rank takes, checked against the world and grad_accum.
int64_t local_rows(const RunConfig& config, const TrainOptions& opt, int world) {
  const int64_t batch_size = config.train.batch_size;
  if (batch_size % world != 0)
    throw UsageError("--batch-size " + std::to_string(batch_size) +
                     " is the global batch and must divide evenly among the " + std::to_string(world) + " ranks");
  const int64_t local = batch_size / world;
  if (local % opt.parallel.grad_accum != 0)
    throw UsageError("--grad-accum " + std::to_string(opt.parallel.grad_accum) + " must divide the " +
                     std::to_string(local) + " rows each rank takes of the batch");
  return local;
}

// The checkpoint --resume names, after every rank has verified its share; nullopt for a
// fresh run. Unfinished saves are removed.
std::optional<std::string> checkpoint_to_resume(const TrainOptions& opt, const checkpoint::RunDir& run,
                                                dist::Communicator& comm) {
  std::optional<std::string> from;
  if (!opt.resume.empty()) {
    std::vector<std::string> skipped;
    from = checkpoint::resolve_resume_across_ranks(comm, opt.resume, run.checkpoints(), &skipped);
    for (const auto& note : skipped) std::printf("resume: %s\n", note.c_str());
  }
  if (comm.rank() == 0)
    for (const auto& name : checkpoint::remove_unfinished_saves(run.checkpoints()))
      std::printf("checkpoints: removed %s, a save that never completed\n", name.c_str());
  return from;
}

// A checkpoint of the same stage continues (the loop's continue_from); a stage-1 one
// starts stage 4 from its weights.
std::optional<std::string> load_resumed_weights(const std::optional<std::string>& from, const TrainOptions& opt,
                                                model::Backbone& model, bool root) {
  if (!from) return std::nullopt;
  checkpoint::load_checkpoint_weights(*from, model);
  if (checkpoint::read_train_manifest(*from).state.stage == opt.stage) return from;
  if (root)
    std::printf("resume: starting %s from %s (weights only; optimizer and schedule start fresh)\n",
                checkpoint::trains_value_heads(opt.stage) ? "stage 4 (value heads)" : "stage 1", from->c_str());
  return std::nullopt;
}

// Where a stage's rows come from and what it trains toward, chosen once from the config's
// value target: the language model (stages 1 and 4 with next-token values) on token
// windows, or outcome values on rollouts. No source: a preemption signal stopped it.
struct Feed {
  std::shared_ptr<void> keep;  // what the source reads from (the corpus)
  std::unique_ptr<BatchSource> source;
  std::function<std::unique_ptr<Objective>(model::Backbone)> objective;
  std::string data;  // for the banner
  int64_t items_per_step = 0;
  std::string rate_key = LoopOptions{}.rate_key, rate_unit = LoopOptions{}.rate_unit;  // what an item is
  std::function<void(const std::string&)> write_files;  // beside each checkpoint: the tokenizer
};

Feed language_model_feed(const RunConfig& config, const TrainOptions& opt, int64_t local_batch, dist::Communicator& comm,
                         const torch::Device& device) {
  const int rank = comm.rank(), world = comm.world_size();
  const std::string data_dir = resolve_training_data(opt.data, opt.run_dir, comm);
  // Preparing a text file can take a while: a signal that stopped it ends the run here.
  if (preempted_in_startup(comm, "train")) return {};
  auto corpus = std::make_shared<data::PreparedCorpus>(data::PreparedCorpus::open(data_dir));
  data::check_vocab_matches(*corpus->tokenizer, config.model.vocab_size, "--data " + data_dir + " with this config");
  const int64_t batch_size = config.train.batch_size, seq_len = config.train.seq_len;
  auto val_windows = validation_windows(corpus->val, data_dir, seq_len,
                                        opt.eval_batches > 0 ? opt.eval_batches * batch_size : 0, rank, world, device);
  Feed feed;
  feed.keep = corpus;
  feed.source = std::make_unique<TokenWindows>(corpus->train, seq_len, batch_size, static_cast<uint64_t>(config.seed),
                                               rank, world, device);
  feed.objective = [&opt, val_windows, local_batch](model::Backbone model) -> std::unique_ptr<Objective> {
    return std::make_unique<LanguageModelObjective>(model, opt.stage, opt.value_weight, val_windows, local_batch,
                                                    opt.parallel.precision);
  };
  feed.data = std::to_string(corpus->train.size()) + " train / " + std::to_string(corpus->val.size()) + " val tokens";
  feed.items_per_step = batch_size * seq_len;
  feed.write_files = [corpus](const std::string& dir) { corpus->tokenizer->save(dir); };
  return feed;
}

// The rollouts' held-out tenth of the tasks validates; the tokenizer is the checkpoint's
// the run starts from.
Feed outcome_feed(const RunConfig& config, const TrainOptions& opt, int64_t local_batch, const std::string& from,
                  dist::Communicator& comm, const torch::Device& device) {
  auto split = read_outcome_split(opt.rollouts, /*held_out_percent=*/10);
  std::shared_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(from);
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, from);
  Feed feed;
  const int64_t rows = split.train.size(), held_out = split.val.size();
  feed.source = std::make_unique<OutcomeBatches>(std::move(split.train), config.train.batch_size,
                                                 static_cast<uint64_t>(config.seed), comm.rank(), comm.world_size(), device);
  feed.objective = [val = split.val, local_batch](model::Backbone model) -> std::unique_ptr<Objective> {
    return std::make_unique<OutcomeObjective>(model, val, local_batch);
  };
  feed.data = std::to_string(rows) + " train / " + std::to_string(held_out) + " held-out rollouts";
  feed.items_per_step = config.train.batch_size;
  feed.rate_key = "rollouts_per_s";
  feed.rate_unit = "rollouts/s";
  feed.write_files = [tokenizer](const std::string& dir) { tokenizer->save(dir); };
  return feed;
}

std::string banner(const RunConfig& config, const TrainOptions& opt, const Feed& feed, const LoopOptions& loop,
                   dist::Communicator& comm, const c10::Device& device) {
  char text[512];
  std::snprintf(text, sizeof text,
                "train: %lld parameters | %s | %lld batches per epoch | %lld steps | "
                "%d rank%s (%s, zero stage %d) | device %s, %s%s | %d threads per rank",
                static_cast<long long>(model::analytic_parameter_count(config.model)), feed.data.c_str(),
                static_cast<long long>(feed.source->batches_per_epoch()), static_cast<long long>(loop.schedule.total_steps),
                comm.world_size(), comm.world_size() == 1 ? "" : "s", comm.backend().c_str(), opt.parallel.zero.stage,
                device.str().c_str(), opt.parallel.precision == Precision::kBFloat16 ? "bf16 autocast" : "fp32",
                opt.activation_checkpointing ? ", activation checkpointing" : "", at::get_num_threads());
  return text;
}

}  // namespace

TrainResult run_training(const RunConfig& config, const TrainOptions& opt, dist::Communicator& comm) {
  const int rank = comm.rank();
  const int64_t local_batch = local_rows(config, opt, comm.world_size());
  const torch::Device device = dist::rank_device(config.device, dist::runtime());
  // On a GPU the host holds the weights while the model is built; its GPU is not asked.
  check_fits_in_memory(config, device.is_cuda() ? MemoryUse::kInference : MemoryUse::kTraining, comm.world_size(),
                       dist::runtime().local_world_size, local_batch / opt.parallel.grad_accum,
                       "the config (with the command line's flags)");
  const bool outcome = config.model.value_target == model::ValueTarget::kOutcome;
  if (outcome && opt.resume.empty())
    throw UsageError("value_target outcome trains the value heads of a trained backbone: pass --resume with its "
                     "checkpoint or run directory");
  const checkpoint::RunDir run(opt.run_dir);
  if (opt.resume.empty()) check_fresh_run_directory(run);
  base::NewDirectories created;
  if (rank == 0) created.create(opt.run_dir);
  if (preempted_in_startup(comm, "train")) return preempted_result(0);
  const auto resume_from = checkpoint_to_resume(opt, run, comm);
  Feed feed = outcome ? outcome_feed(config, opt, local_batch, *resume_from, comm, device)
                      : language_model_feed(config, opt, local_batch, comm, device);
  if (!feed.source) return preempted_result(0);
  LoopOptions loop;
  loop.schedule = plan_schedule(opt.length, feed.source->batches_per_epoch(), /*warmup_cap=*/200);
  if (preempted_in_startup(comm, "train")) return preempted_result(0);

  torch::manual_seed(static_cast<uint64_t>(config.seed));
  model::Backbone model(config.model);
  model->to(device);
  model->train();
  model->set_activation_checkpointing(opt.activation_checkpointing);
  loop.continue_from = load_resumed_weights(resume_from, opt, model, rank == 0);
  loop.banner = banner(config, opt, feed, loop, comm, device);
  loop.stage = opt.stage;
  loop.run_dir = opt.run_dir;
  loop.tensorboard_dir = opt.tensorboard_dir;
  loop.config = to_json(config);
  loop.run_info = opt.run_info;
  loop.write_files = feed.write_files;
  loop.items_per_step = feed.items_per_step;
  loop.rate_key = feed.rate_key;
  loop.rate_unit = feed.rate_unit;
  loop.seed = config.seed;
  loop.optimizer = opt.optimizer;
  loop.cadence = opt.cadence;
  loop.parallel = opt.parallel;
  loop.profile = opt.profile;
  loop.created = &created;
  const auto objective = feed.objective(model);
  return run_training_loop(*objective, *feed.source, loop, comm);
}

}  // namespace crsm::train
