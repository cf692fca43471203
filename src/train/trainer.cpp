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
#include "config/memory_plan.h"
#include "checkpoint/training_checkpoint.h"
#include "train/trainable.h"
#include "train/training_data.h"

namespace crsm::train {
namespace {

namespace fs = std::filesystem;

// Rows [rank * n / world, (rank + 1) * n / world) of n: this rank's part of a list.
std::pair<int64_t, int64_t> rank_rows(int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
}

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

// Windows of seq_len + 1 tokens from the sampler's order of the training split.
class TokenWindows : public BatchSource {
 public:
  TokenWindows(const data::TokenSplit& split, int64_t seq_len, int64_t batch_size, uint64_t seed, int rank,
               int world, torch::Device device)
      : split_(split), seq_len_(seq_len), device_(device), sampler_(split.size(), seq_len, batch_size, seed, rank, world) {}

  int64_t batches_per_epoch() const override { return sampler_.batches_per_epoch(); }
  int64_t rows() const override { return sampler_.rows(); }
  Batch next() override { return {data::gather_windows(split_, sampler_.next(), seq_len_).to(device_)}; }
  data::SamplerPosition position() const override { return sampler_.position(); }
  void set_position(const data::SamplerPosition& p) override { sampler_.set_position(p); }

 private:
  const data::TokenSplit& split_;
  int64_t seq_len_;
  torch::Device device_;
  data::BatchSampler sampler_;
};

// Stage 1 (next-token cross-entropy) and stage 4 (plus the value heads' loss).
class LanguageModelObjective : public Objective {
 public:
  LanguageModelObjective(model::Backbone model, bool value_loss, double value_weight, at::Tensor val_windows,
                         int64_t eval_batch, Precision precision)
      : model_(std::move(model)),
        value_loss_(value_loss),
        value_weight_(value_loss ? value_weight : 0.0),
        val_windows_(std::move(val_windows)),
        eval_batch_(eval_batch),
        precision_(precision) {}

  torch::nn::Module& module() override { return *model_; }
  TrainableParameters trainable() override { return trainable_parameters(model_, value_loss_); }
  void set_unit_hooks(model::UnitHooks* hooks) override { model_->set_unit_hooks(hooks); }

  std::vector<at::Tensor> losses(const Batch& batch) override {
    const LossParts parts = lm_loss(model_, batch[0], value_weight_);
    return {parts.total, parts.lm, parts.value};
  }

  bool draws_random_numbers() const override { return model_->config().dropout > 0; }

  Report train_report(const std::vector<double>& means) const override {
    Report r{{{"loss", means[0]}}, figures(means[0])};
    if (value_loss_) r.record["value_loss"] = means[1];
    return r;
  }

  Report validate(dist::Communicator& comm) override {
    double weighted = 0;
    const auto rows = static_cast<double>(val_windows_.size(0));
    // Ranks' shares of the windows may differ by one; with gathered parameters every
    // rank must still take the same number of forward passes.
    const int64_t own = evaluation_passes(val_windows_.size(0), eval_batch_);
    const auto passes = model_->unit_hooks()  // every forward gathers: it is collective
                            ? static_cast<int64_t>(dist::all_reduce_scalar(comm, static_cast<double>(own), dist::ReduceOp::kMax))
                            : own;
    if (passes > 0) {
      AutocastScope autocast(precision_, val_windows_.device().type());
      weighted = evaluate_lm_loss(model_, val_windows_, eval_batch_, passes) * rows;
    }
    auto sums = torch::tensor({weighted, rows}, torch::TensorOptions().dtype(torch::kDouble)).to(comm.device());
    dist::all_reduce_now(comm, sums);
    sums = sums.cpu();
    const double loss = sums[0].item<double>() / sums[1].item<double>();
    return {{{"loss", loss}, {"ppl", std::exp(loss)}}, figures(loss)};
  }

 private:
  static std::string figures(double loss) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "loss %.4f | ppl %8.2f", loss, std::exp(loss));
    return buf;
  }

  model::Backbone model_;
  bool value_loss_;
  double value_weight_;
  at::Tensor val_windows_;
  int64_t eval_batch_;
  Precision precision_;
};

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
  const auto [lo, hi] = rank_rows(static_cast<int64_t>(starts.size()), rank, world);
  starts = std::vector<int64_t>(starts.begin() + lo, starts.begin() + hi);
  return data::gather_windows(val, starts, seq_len).to(device);
}

}  // namespace

TrainResult run_training(const RunConfig& config, const TrainOptions& opt, dist::Communicator& comm) {
  const int rank = comm.rank(), world = comm.world_size();
  const bool root = rank == 0;
  // The run's shape is the config's (the CLI has merged its flags into it).
  const int64_t batch_size = config.train.batch_size, seq_len = config.train.seq_len;
  const int zero_stage = static_cast<int>(config.zero_stage);
  if (batch_size % world != 0)
    throw UsageError("--batch-size " + std::to_string(batch_size) +
                     " is the global batch and must divide evenly among the " + std::to_string(world) + " ranks");
  const int64_t local_batch = batch_size / world;
  if (local_batch % opt.grad_accum != 0)
    throw UsageError("--grad-accum " + std::to_string(opt.grad_accum) + " must divide the " +
                     std::to_string(local_batch) + " rows each rank takes of the batch");
  const int64_t micro = local_batch / opt.grad_accum;
  const torch::Device device = dist::rank_device(config.device, dist::runtime());
  // On a GPU the host holds the weights while the model is built; its GPU is not asked.
  check_fits_in_memory(config, device.is_cuda() ? MemoryUse::kInference : MemoryUse::kTraining, world,
                       dist::runtime().local_world_size, micro, "the config (with the command line's flags)");
  const checkpoint::RunDir run(opt.run_dir);
  const fs::path ckpt_root = run.checkpoints();
  if (opt.resume.empty()) check_fresh_run_directory(run);

  base::NewDirectories created;
  if (root) created.create(opt.run_dir);
  const std::string data_dir = resolve_training_data(opt.data, opt.run_dir, comm);
  if (preempted_in_startup(comm, "train")) return preempted_result(0);
  auto corpus = data::PreparedCorpus::open(data_dir);
  const auto& tokenizer = corpus.tokenizer;
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, "--data " + data_dir + " with this config");
  auto val_windows = validation_windows(corpus.val, data_dir, seq_len,
                                        opt.eval_batches > 0 ? opt.eval_batches * batch_size : 0, rank, world, device);
  TokenWindows source(corpus.train, seq_len, batch_size, static_cast<uint64_t>(config.seed), rank, world, device);
  if (opt.max_steps == 0 && opt.epochs > std::numeric_limits<int64_t>::max() / source.batches_per_epoch())
    throw UsageError("--epochs " + std::to_string(opt.epochs) + " of " + std::to_string(source.batches_per_epoch()) +
                     " batches each is more steps than can be counted");

  LoopOptions loop;
  loop.total_steps = opt.max_steps > 0 ? opt.max_steps : opt.epochs * source.batches_per_epoch();
  loop.warmup_steps = opt.warmup_steps >= 0 ? opt.warmup_steps : std::min<int64_t>(200, loop.total_steps / 20);

  std::optional<std::string> resume_from;
  if (!opt.resume.empty()) {
    std::vector<std::string> skipped;
    resume_from = checkpoint::resolve_resume_across_ranks(comm, opt.resume, ckpt_root.string(), &skipped);
    for (const auto& note : skipped) std::printf("resume: %s\n", note.c_str());
  }
  if (preempted_in_startup(comm, "train")) return preempted_result(0);
  if (root)
    for (const auto& name : checkpoint::remove_unfinished_saves(ckpt_root.string()))
      std::printf("checkpoints: removed %s, a save that never completed\n", name.c_str());

  torch::manual_seed(static_cast<uint64_t>(config.seed));
  model::Backbone model(config.model);
  model->to(device);
  model->train();
  model->set_activation_checkpointing(opt.activation_checkpointing);
  if (resume_from) {
    // A checkpoint of the same stage continues; a stage-1 one starts stage 4 from its weights.
    if (checkpoint::read_train_manifest(*resume_from).state.value_loss == opt.value_loss)
      loop.continue_from = resume_from;
    else if (root)
      std::printf("resume: starting %s from %s (weights only; optimizer and schedule start fresh)\n",
                  opt.value_loss ? "stage 4 (value heads)" : "stage 1", resume_from->c_str());
    checkpoint::load_checkpoint_weights(*resume_from, model);
  }

  char banner[512];
  std::snprintf(banner, sizeof banner,
                "train: %lld parameters | %lld train / %lld val tokens | %lld batches per epoch | %lld steps | "
                "%d rank%s (%s, zero stage %d) | device %s, %s%s | %d threads per rank",
                static_cast<long long>(model::analytic_parameter_count(config.model)),
                static_cast<long long>(corpus.train.size()), static_cast<long long>(corpus.val.size()),
                static_cast<long long>(source.batches_per_epoch()), static_cast<long long>(loop.total_steps), world,
                world == 1 ? "" : "s", comm.backend().c_str(), zero_stage, device.str().c_str(),
                opt.precision == Precision::kBFloat16 ? "bf16 autocast" : "fp32",
                opt.activation_checkpointing ? ", activation checkpointing" : "", at::get_num_threads());
  loop.banner = banner;
  loop.stage = opt.value_loss ? "finetune" : "backbone";
  loop.run_dir = opt.run_dir;
  loop.config = to_json(config);
  loop.write_files = [&](const std::string& dir) { tokenizer->save(dir); };
  loop.items_per_step = batch_size * seq_len;
  loop.grad_accum = opt.grad_accum;
  loop.lr = opt.lr;
  loop.min_lr_ratio = opt.min_lr_ratio;
  loop.weight_decay = opt.weight_decay;
  loop.grad_clip = opt.grad_clip;
  loop.eval_every = opt.eval_every;
  loop.save_every = opt.save_every;
  loop.log_every = opt.log_every;
  loop.keep_last = opt.keep_last;
  loop.zero_stage = zero_stage;
  loop.prefetch = opt.prefetch;
  loop.batch_split = opt.batch_split;
  loop.bucket_bytes = opt.bucket_bytes;
  loop.seed = config.seed;
  loop.precision = opt.precision;
  loop.created = &created;
  LanguageModelObjective objective(model, opt.value_loss, opt.value_weight, val_windows, local_batch, opt.precision);
  return run_training_loop(objective, source, loop, comm);
}

}  // namespace crsm::train
