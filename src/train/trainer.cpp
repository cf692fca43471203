#include "train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/new_directories.h"
#include "data/batch_sampler.h"
#include "data/data_error.h"
#include "data/prepared_corpus.h"
#include "dist/checkpoint_store.h"
#include "dist/data_parallel.h"
#include "dist/resume_across_ranks.h"
#include "dist/runtime.h"
#include "model/parameter_count.h"
#include "train/adamw.h"
#include "train/lm_loss.h"
#include "train/lr_schedule.h"
#include "train/memory_fit.h"
#include "train/metrics_writer.h"
#include "train/train_checkpoint.h"
#include "train/trainable.h"
#include "train/training_data.h"

namespace crsm::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Rows [rank * n / world, (rank + 1) * n / world) of n: this rank's part of a list.
std::pair<int64_t, int64_t> rank_rows(int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

// A fresh run (no --resume) never writes over an earlier run's history: its
// checkpoints, or the metrics and config of a run that died before its first save.
void check_fresh_run_directory(const fs::path& run_dir) {
  const std::string dir = "--checkpoint-dir " + run_dir.string();
  if (dist::holds_checkpoints((run_dir / "checkpoints").string()))
    throw UsageError(dir + " already holds checkpoints: pass --resume auto to continue that run, or choose "
                           "another directory");
  for (const char* file : {"metrics.jsonl", "config.json"})
    if (fs::exists(run_dir / file))
      throw UsageError(dir + " holds an earlier run's " + file + " but no checkpoint: choose another "
                             "directory, or remove that run to start over");
}

// The signal any rank received (the largest number), or 0; collective.
int signal_on_any_rank(dist::Communicator& comm) {
  return static_cast<int>(dist::all_reduce_scalar(comm, dist::preemption_signal(), dist::ReduceOp::kMax));
}

// A safe point of start-up (collective): whether a rank was signalled since main()
// installed the handlers. The run then stops before taking a step; nothing has been
// written, so the previous checkpoint stands.
bool preempted_in_startup(dist::Communicator& comm) {
  const int sig = signal_on_any_rank(comm);
  if (sig && comm.rank() == 0) {
    std::printf("train: preempted by %s during start-up, before taking a step; nothing was written; resume "
                "with --resume auto\n",
                dist::signal_name(sig).c_str());
    std::fflush(stdout);
  }
  return sig != 0;
}

TrainResult preempted_result(int64_t step) {
  TrainResult r;
  r.exit_status = kExitPreempted;
  r.steps = step;
  return r;
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
  const fs::path run_dir(opt.run_dir);
  const fs::path ckpt_root = run_dir / "checkpoints";
  if (opt.resume.empty()) check_fresh_run_directory(run_dir);

  base::NewDirectories created;
  if (root) created.create(opt.run_dir);
  const std::string data_dir = resolve_training_data(opt.data, opt.run_dir, comm);
  if (preempted_in_startup(comm)) return preempted_result(0);
  auto corpus = data::PreparedCorpus::open(data_dir);
  const auto& tokenizer = corpus.tokenizer;
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, "--data " + data_dir + " with this config");
  const auto& train_split = corpus.train;
  const auto& val_split = corpus.val;
  std::vector<int64_t> val_starts;
  try {
    val_starts = data::eval_window_starts(
        val_split.size(), seq_len, opt.eval_batches > 0 ? opt.eval_batches * batch_size : 0);
  } catch (const data::DataError&) {
    throw data::DataError("--seq-len " + std::to_string(seq_len) +
                          " is longer than the validation split of " + data_dir + " (" +
                          std::to_string(val_split.size()) + " tokens)");
  }
  {
    const auto [lo, hi] = rank_rows(static_cast<int64_t>(val_starts.size()), rank, world);
    val_starts = std::vector<int64_t>(val_starts.begin() + lo, val_starts.begin() + hi);
  }
  const auto val_windows = data::gather_windows(val_split, val_starts, seq_len).to(device);
  data::BatchSampler sampler(train_split.size(), seq_len, batch_size,
                             static_cast<uint64_t>(config.seed), rank, world);
  if (opt.max_steps == 0 && opt.epochs > std::numeric_limits<int64_t>::max() / sampler.batches_per_epoch())
    throw UsageError("--epochs " + std::to_string(opt.epochs) + " of " + std::to_string(sampler.batches_per_epoch()) +
                     " batches each is more steps than can be counted");
  const int64_t total_steps =
      opt.max_steps > 0 ? opt.max_steps : opt.epochs * sampler.batches_per_epoch();
  const int64_t warmup =
      opt.warmup_steps >= 0 ? opt.warmup_steps : std::min<int64_t>(200, total_steps / 20);

  std::optional<std::string> resume_from;
  if (!opt.resume.empty()) {
    std::vector<std::string> skipped;
    resume_from = dist::resolve_resume_across_ranks(comm, opt.resume, ckpt_root.string(), &skipped);
    for (const auto& note : skipped) std::printf("resume: %s\n", note.c_str());
  }
  if (preempted_in_startup(comm)) return preempted_result(0);
  if (root)
    for (const auto& name : dist::remove_unfinished_saves(ckpt_root.string()))
      std::printf("checkpoints: removed %s, a save that never completed\n", name.c_str());

  torch::manual_seed(static_cast<uint64_t>(config.seed));
  model::Backbone model(config.model);
  model->to(device);
  model->train();
  std::optional<TrainManifest> manifest;
  if (resume_from) {
    manifest = read_train_manifest(*resume_from);
    load_checkpoint_weights(*resume_from, model);
  }
  const auto trainable = trainable_parameters(model, opt.value_loss);
  dist::DataParallelOptions dp_options;
  dp_options.zero_stage = zero_stage;
  dp_options.bucket_bytes = opt.bucket_bytes;
  dist::DataParallel dp(trainable.params, trainable.decay, comm, dp_options);
  AdamW optimizer(optimizer_slots(dp), {0.9, 0.95, 1e-8, opt.weight_decay});
  const ShardingInfo sharding = sharding_of(dp.layout(), zero_stage);

  TrainState state;
  state.value_loss = opt.value_loss;
  bool continuing = false;
  torch::manual_seed(rank_seed(config.seed, rank));
  if (resume_from) {
    if (manifest->state.value_loss == opt.value_loss) {
      state = load_train_state(*resume_from, *manifest, optimizer, rank, config.seed);
      sampler.set_position(state.sampler);
      continuing = true;
      if (root) {
        std::printf("resume: continuing from %s at step %lld", resume_from->c_str(),
                    static_cast<long long>(state.step));
        const int saved_world = manifest->world_size;
        const int saved_stage = manifest->zero_stage;
        if (saved_world != world || saved_stage != zero_stage)
          std::printf(" (saved by %d rank%s at zero stage %d; re-partitioned for %d rank%s at stage %d)",
                      saved_world, saved_world == 1 ? "" : "s", saved_stage, world,
                      world == 1 ? "" : "s", zero_stage);
        std::printf("\n");
      }
    } else if (root) {
      std::printf("resume: starting %s from %s (weights only; optimizer and schedule start fresh)\n",
                  opt.value_loss ? "stage 4 (value heads)" : "stage 1", resume_from->c_str());
    }
  }

  if (preempted_in_startup(comm)) return preempted_result(state.step);
  TrainResult result;

  auto config_json = to_json(config);
  std::optional<MetricsWriter> metrics;
  if (root) {
    fs::create_directories(ckpt_root);
    base::write_file_atomically((run_dir / "config.json").string(), config_json.dump(2) + "\n");
    metrics.emplace(opt.run_dir, continuing ? state.step : -1);
  }
  created.keep();
  const LrSchedule schedule{opt.lr, opt.lr * opt.min_lr_ratio, warmup, total_steps};
  const double value_weight = opt.value_loss ? opt.value_weight : 0.0;
  const int64_t tokens_per_step = batch_size * seq_len;

  if (root) {
    std::printf("train: %lld parameters | %lld train / %lld val tokens | %lld batches per epoch | "
                "%lld steps | %d rank%s (%s, zero stage %d) | device %s, %s | %d threads per rank\n",
                static_cast<long long>(model::analytic_parameter_count(config.model)),
                static_cast<long long>(train_split.size()), static_cast<long long>(val_split.size()),
                static_cast<long long>(sampler.batches_per_epoch()),
                static_cast<long long>(total_steps), world, world == 1 ? "" : "s",
                comm.backend().c_str(), zero_stage, device.str().c_str(),
                opt.precision == Precision::kBFloat16 ? "bf16 autocast" : "fp32", at::get_num_threads());
    std::fflush(stdout);
  }

  auto save = [&] {
    state.sampler = sampler.position();
    result.last_checkpoint = save_train_checkpoint(ckpt_root.string(), state, model, optimizer,
                                                   sharding, *tokenizer, config_json, opt.keep_last,
                                                   comm);
  };
  auto evaluate = [&] {
    double weighted = 0;
    if (val_windows.size(0) > 0) {
      AutocastScope autocast(opt.precision, device.type());
      weighted = evaluate_lm_loss(model, val_windows, local_batch) * static_cast<double>(val_windows.size(0));
    }
    auto sums = torch::tensor({weighted, static_cast<double>(val_windows.size(0))},
                              torch::TensorOptions().dtype(torch::kDouble)).to(comm.device());
    dist::all_reduce_now(comm, sums);
    sums = sums.cpu();
    const double loss = sums[0].item<double>() / sums[1].item<double>();
    if (root) {
      metrics->write({{"step", state.step}, {"split", "val"}, {"loss", loss}, {"ppl", std::exp(loss)}});
      std::printf("step %6lld | val loss %.4f | val ppl %.2f\n", static_cast<long long>(state.step),
                  loss, std::exp(loss));
      std::fflush(stdout);
    }
    return loss;
  };
  auto report_memory = [&] {
    const auto m = dp.memory();
    auto all = torch::zeros({3 * world}, torch::kLong);
    all[3 * rank] = m.params;
    all[3 * rank + 1] = m.grads;
    all[3 * rank + 2] = optimizer.state_bytes();
    all = all.to(comm.device());
    comm.all_gather(all)->wait();
    all = all.cpu();
    if (!root) return;
    for (int r = 0; r < world; ++r)
      std::printf("memory: rank %d holds params %s | grads %s | optimizer %s\n", r,
                  mib(all[3 * r].item<int64_t>()).c_str(), mib(all[3 * r + 1].item<int64_t>()).c_str(),
                  mib(all[3 * r + 2].item<int64_t>()).c_str());
    std::fflush(stdout);
  };

  if (state.step >= total_steps) {
    if (root)
      std::printf("train: %s already reached step %lld of %lld; nothing to do\n",
                  resume_from->c_str(), static_cast<long long>(state.step),
                  static_cast<long long>(total_steps));
    result.steps = state.step;
    result.last_checkpoint = *resume_from;
    return result;
  }
  const int64_t first_step = state.step;
  double window_seconds = 0, run_seconds = 0;
  double window_loss = 0;
  int64_t window_steps = 0;
  while (state.step < total_steps) {
    const auto step_start = Clock::now();
    const auto windows = data::gather_windows(train_split, sampler.next(), seq_len).to(device);
    dp.zero_grad();
    // total, lm, value and the preemption flag, accumulated on the device and read once
    // after the reduction: on a GPU each read is a sync.
    auto shared = torch::zeros({4}, torch::TensorOptions().dtype(torch::kDouble).device(device));
    for (int64_t k = 0; k < opt.grad_accum; ++k) {
      dp.begin_micro_batch(k + 1 == opt.grad_accum);
      LossParts parts;
      {
        // Forward only: backward runs outside autocast, as autograd expects.
        AutocastScope autocast(opt.precision, device.type());
        parts = lm_loss(model, windows.narrow(0, k * micro, micro), value_weight);
      }
      (parts.total / static_cast<double>(opt.grad_accum)).backward();
      dp.end_micro_batch();
      shared.narrow(0, 0, 3) +=
          torch::stack({parts.total.detach(), parts.lm.detach(), parts.value.detach()}).to(torch::kDouble) /
          static_cast<double>(opt.grad_accum);
    }
    // One reduction carries the step's losses and whether any rank was signalled.
    if (dist::preemption_signalled()) shared[3] = 1.0;
    dist::all_reduce_now(comm, shared);
    shared = shared.cpu();
    const double loss = shared[0].item<double>() / world;
    const double lm = shared[1].item<double>() / world;
    const double value = shared[2].item<double>() / world;
    const bool preempted = shared[3].item<double>() > 0;

    const double grad_norm = dp.grad_norm();
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
      if (root)
        std::fprintf(stderr,
                     "train: non-finite %s at step %lld (loss %g, gradient norm %g); stopping. "
                     "Checkpoints are untouched%s%s\n",
                     std::isfinite(loss) ? "gradient" : "loss", static_cast<long long>(state.step + 1),
                     loss, grad_norm, result.last_checkpoint.empty() ? "" : "; the last one is ",
                     result.last_checkpoint.c_str());
      result.exit_status = kExitNonFinite;
      result.steps = state.step;
      return result;
    }
    if (opt.grad_clip > 0 && grad_norm > opt.grad_clip) dp.scale_grads(opt.grad_clip / (grad_norm + 1e-6));
    const double lr = schedule.at(state.step);
    optimizer.step(lr, dp.owned_grads());
    dp.gather_params();
    ++state.step;
    const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    window_seconds += step_seconds;
    run_seconds += step_seconds;
    window_loss += lm;
    ++window_steps;
    if (state.step == first_step + 1) report_memory();

    if (state.step % opt.log_every == 0 || state.step == total_steps) {
      const double tps = window_steps * tokens_per_step / window_seconds;
      const double mean = window_loss / window_steps;
      const double eta = run_seconds / (state.step - first_step) * (total_steps - state.step);
      nlohmann::json record = {{"step", state.step}, {"split", "train"}, {"loss", mean},
                               {"lr", lr},           {"tokens_per_s", tps}, {"grad_norm", grad_norm}};
      if (opt.value_loss) record["value_loss"] = value;
      if (root) {
        metrics->write(record);
        std::printf("step %6lld/%lld | loss %.4f | ppl %8.2f | lr %.2e | %6.0f tok/s | ETA %s\n",
                    static_cast<long long>(state.step), static_cast<long long>(total_steps), mean,
                    std::exp(mean), lr, tps, format_duration(eta).c_str());
        std::fflush(stdout);
      }
      window_loss = 0;
      window_steps = 0;
      window_seconds = 0;
    }
    const bool last = state.step == total_steps;
    if ((opt.eval_every > 0 && state.step % opt.eval_every == 0) || last)
      result.final_val_loss = evaluate();
    if ((opt.save_every > 0 && state.step % opt.save_every == 0) || last || preempted) save();
    if (preempted && !last) {
      const int sig = signal_on_any_rank(comm);
      if (root) {
        std::printf("train: preempted by %s: checkpoint %s written at step %lld; resume with --resume auto\n",
                    dist::signal_name(sig).c_str(), result.last_checkpoint.c_str(),
                    static_cast<long long>(state.step));
        std::fflush(stdout);
      }
      result.exit_status = kExitPreempted;
      break;
    }
  }
  result.steps = state.step;
  result.steps_run = state.step - first_step;
  return result;
}

}  // namespace crsm::train
