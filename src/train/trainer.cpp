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
#include "checkpoint/store.h"
#include "checkpoint/resume_across_ranks.h"
#include "checkpoint/run_dir.h"
#include "dist/runtime.h"
#include "model/parameter_count.h"
#include "train/lm_loss.h"
#include "train/lm_objective.h"
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

std::string banner(const RunConfig& config, const TrainOptions& opt, const data::PreparedCorpus& corpus,
                   int64_t batches_per_epoch, const LoopOptions& loop, dist::Communicator& comm, const c10::Device& device) {
  char text[512];
  std::snprintf(text, sizeof text,
                "train: %lld parameters | %lld train / %lld val tokens | %lld batches per epoch | %lld steps | "
                "%d rank%s (%s, zero stage %d) | device %s, %s%s | %d threads per rank",
                static_cast<long long>(model::analytic_parameter_count(config.model)),
                static_cast<long long>(corpus.train.size()), static_cast<long long>(corpus.val.size()),
                static_cast<long long>(batches_per_epoch), static_cast<long long>(loop.schedule.total_steps),
                comm.world_size(), comm.world_size() == 1 ? "" : "s", comm.backend().c_str(), opt.parallel.zero.stage,
                device.str().c_str(), opt.parallel.precision == Precision::kBFloat16 ? "bf16 autocast" : "fp32",
                opt.activation_checkpointing ? ", activation checkpointing" : "", at::get_num_threads());
  return text;
}

}  // namespace

TrainResult run_training(const RunConfig& config, const TrainOptions& opt, dist::Communicator& comm) {
  const int rank = comm.rank(), world = comm.world_size();
  const int64_t local_batch = local_rows(config, opt, world);
  const torch::Device device = dist::rank_device(config.device, dist::runtime());
  // On a GPU the host holds the weights while the model is built; its GPU is not asked.
  check_fits_in_memory(config, device.is_cuda() ? MemoryUse::kInference : MemoryUse::kTraining, world,
                       dist::runtime().local_world_size, local_batch / opt.parallel.grad_accum,
                       "the config (with the command line's flags)");
  const checkpoint::RunDir run(opt.run_dir);
  if (opt.resume.empty()) check_fresh_run_directory(run);
  base::NewDirectories created;
  if (rank == 0) created.create(opt.run_dir);
  const std::string data_dir = resolve_training_data(opt.data, opt.run_dir, comm);
  if (preempted_in_startup(comm, "train")) return preempted_result(0);
  auto corpus = data::PreparedCorpus::open(data_dir);
  data::check_vocab_matches(*corpus.tokenizer, config.model.vocab_size, "--data " + data_dir + " with this config");
  const int64_t batch_size = config.train.batch_size, seq_len = config.train.seq_len;
  auto val_windows = validation_windows(corpus.val, data_dir, seq_len,
                                        opt.eval_batches > 0 ? opt.eval_batches * batch_size : 0, rank, world, device);
  TokenWindows source(corpus.train, seq_len, batch_size, static_cast<uint64_t>(config.seed), rank, world, device);
  LoopOptions loop;
  loop.schedule = plan_schedule(opt.length, source.batches_per_epoch(), /*warmup_cap=*/200);
  const auto resume_from = checkpoint_to_resume(opt, run, comm);
  if (preempted_in_startup(comm, "train")) return preempted_result(0);

  torch::manual_seed(static_cast<uint64_t>(config.seed));
  model::Backbone model(config.model);
  model->to(device);
  model->train();
  model->set_activation_checkpointing(opt.activation_checkpointing);
  loop.continue_from = load_resumed_weights(resume_from, opt, model, rank == 0);
  loop.banner = banner(config, opt, corpus, source.batches_per_epoch(), loop, comm, device);
  loop.stage = opt.stage;
  loop.run_dir = opt.run_dir;
  loop.tensorboard_dir = opt.tensorboard_dir;
  loop.config = to_json(config);
  loop.run_info = opt.run_info;
  loop.write_files = [&](const std::string& dir) { corpus.tokenizer->save(dir); };
  loop.items_per_step = batch_size * seq_len;
  loop.seed = config.seed;
  loop.optimizer = opt.optimizer;
  loop.cadence = opt.cadence;
  loop.parallel = opt.parallel;
  loop.created = &created;
  LanguageModelObjective objective(model, opt.stage, opt.value_weight, val_windows, local_batch, opt.parallel.precision);
  return run_training_loop(objective, source, loop, comm);
}

}  // namespace crsm::train
  loop.profile = opt.profile;
