#include "train/trainer.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data/batch_sampler.h"
#include "data/data_error.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "dist/checkpoint_store.h"
#include "model/parameter_count.h"
#include "train/adamw.h"
#include "train/lm_loss.h"
#include "train/lr_schedule.h"
#include "train/metrics_writer.h"
#include "train/train_checkpoint.h"

namespace crsm::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

torch::Device parse_device(const std::string& name) {
  if (name.rfind("cuda", 0) == 0 && !torch::cuda::is_available())
    throw std::invalid_argument("--device " + name +
                                ": no CUDA device is available (CPU-only LibTorch or no visible GPU)");
  return torch::Device(name);
}

// Scales gradients so their global L2 norm is at most max_norm; returns the norm
// before scaling (also when not clipping, for the non-finite check).
double clip_gradients(const std::vector<AdamW::Param>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> squares;
  for (const auto& p : params)
    if (p.tensor.grad().defined()) squares.push_back(p.tensor.grad().pow(2).sum());
  if (squares.empty()) return 0.0;
  const double norm = torch::stack(squares).sum().sqrt().item<double>();
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm))
    for (const auto& p : params)
      if (p.tensor.grad().defined()) p.tensor.grad().mul_(max_norm / (norm + 1e-6));
  return norm;
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

bool has_checkpoints(const fs::path& root) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec))
    if (e.path().filename().string().rfind("step_", 0) == 0) return true;
  return false;
}

}  // namespace

TrainResult run_training(const RunConfig& config, const TrainOptions& opt) {
  if (opt.batch_size % opt.grad_accum != 0)
    throw std::invalid_argument("--grad-accum " + std::to_string(opt.grad_accum) +
                                " must divide the batch size " + std::to_string(opt.batch_size));
  const torch::Device device = parse_device(opt.device);

  auto tokenizer = data::load_tokenizer(opt.data_dir);
  data::check_vocab_matches(*tokenizer, config.model.vocab_size,
                            "--data " + opt.data_dir + " with this config");
  const auto train_split = data::TokenSplit::open(opt.data_dir, "train");
  const auto val_split = data::TokenSplit::open(opt.data_dir, "val");
  std::vector<int64_t> val_starts;
  try {
    val_starts = data::eval_window_starts(
        val_split.size(), opt.seq_len, opt.eval_batches > 0 ? opt.eval_batches * opt.batch_size : 0);
  } catch (const data::DataError&) {
    throw data::DataError("--seq-len " + std::to_string(opt.seq_len) +
                          " is longer than the validation split of " + opt.data_dir + " (" +
                          std::to_string(val_split.size()) + " tokens)");
  }
  const auto val_windows = data::gather_windows(val_split, val_starts, opt.seq_len).to(device);
  data::BatchSampler sampler(train_split.size(), opt.seq_len, opt.batch_size,
                             static_cast<uint64_t>(opt.seed));
  const int64_t total_steps =
      opt.max_steps > 0 ? opt.max_steps : opt.epochs * sampler.batches_per_epoch();
  const int64_t warmup =
      opt.warmup_steps >= 0 ? opt.warmup_steps : std::min<int64_t>(200, total_steps / 20);

  const fs::path run_dir(opt.run_dir);
  const fs::path ckpt_root = run_dir / "checkpoints";
  std::optional<std::string> resume_from;
  if (opt.resume.empty()) {
    if (has_checkpoints(ckpt_root))
      throw std::invalid_argument("--checkpoint-dir " + opt.run_dir +
                                  " already holds checkpoints: pass --resume auto to continue "
                                  "that run, or choose another directory");
  } else {
    std::vector<std::string> skipped;
    resume_from = dist::resolve_resume(opt.resume, ckpt_root.string(), &skipped);
    for (const auto& note : skipped) std::printf("resume: %s\n", note.c_str());
  }

  torch::manual_seed(static_cast<uint64_t>(opt.seed));
  model::Backbone model(config.model);
  model->to(device);
  model->train();
  const auto named = model::module_tensors(*model);
  AdamW optimizer(decay_groups(named), {0.9, 0.95, 1e-8, opt.weight_decay});
  TrainState state;
  state.value_loss = opt.value_loss;
  bool continuing = false;
  if (resume_from) {
    load_checkpoint_weights(*resume_from, model);
    const auto manifest = dist::read_manifest(*resume_from);
    if (manifest.at("value_loss").get<bool>() == opt.value_loss) {
      state = load_train_state(*resume_from, optimizer);
      sampler.set_position(state.sampler);
      continuing = true;
      std::printf("resume: continuing from %s at step %lld\n", resume_from->c_str(),
                  static_cast<long long>(state.step));
    } else {
      std::printf("resume: starting %s from %s (weights only; optimizer and schedule start fresh)\n",
                  opt.value_loss ? "stage 4 (value heads)" : "stage 1", resume_from->c_str());
    }
  }

  fs::create_directories(ckpt_root);
  auto config_json = to_json(config);
  {
    std::ofstream(run_dir / "config.json") << config_json.dump(2) << "\n";
  }
  MetricsWriter metrics(opt.run_dir, continuing ? state.step : -1);
  const LrSchedule schedule{opt.lr, opt.lr * opt.min_lr_ratio, warmup, total_steps};
  const double value_weight = opt.value_loss ? opt.value_weight : 0.0;
  const int64_t micro = opt.batch_size / opt.grad_accum;
  const int64_t tokens_per_step = opt.batch_size * opt.seq_len;

  std::printf("train: %lld parameters | %lld train / %lld val tokens | %lld batches per epoch | "
              "%lld steps | device %s | %d threads\n",
              static_cast<long long>(model::analytic_parameter_count(config.model)),
              static_cast<long long>(train_split.size()), static_cast<long long>(val_split.size()),
              static_cast<long long>(sampler.batches_per_epoch()),
              static_cast<long long>(total_steps), opt.device.c_str(), at::get_num_threads());
  std::fflush(stdout);

  TrainResult result;
  auto save = [&] {
    state.sampler = sampler.position();
    result.last_checkpoint = save_train_checkpoint(ckpt_root.string(), state, model, optimizer,
                                                   *tokenizer, config_json, opt.keep_last);
  };
  auto evaluate = [&] {
    const double loss = evaluate_lm_loss(model, val_windows, opt.batch_size);
    metrics.write({{"step", state.step}, {"split", "val"}, {"loss", loss}, {"ppl", std::exp(loss)}});
    std::printf("step %6lld | val loss %.4f | val ppl %.2f\n", static_cast<long long>(state.step),
                loss, std::exp(loss));
    std::fflush(stdout);
    return loss;
  };

  if (state.step >= total_steps) {
    std::printf("train: %s already reached step %lld of %lld; nothing to do\n", resume_from->c_str(),
                static_cast<long long>(state.step), static_cast<long long>(total_steps));
    result.steps = state.step;
    result.last_checkpoint = *resume_from;
    return result;
  }
  const auto run_start = Clock::now();
  auto window_start = run_start;
  const int64_t first_step = state.step;
  double window_loss = 0;
  int64_t window_steps = 0;
  while (state.step < total_steps) {
    const auto windows = data::gather_windows(train_split, sampler.next(), opt.seq_len).to(device);
    optimizer.zero_grad();
    double loss = 0, lm = 0, value = 0;
    for (int64_t k = 0; k < opt.grad_accum; ++k) {
      const auto parts = lm_loss(model, windows.narrow(0, k * micro, micro), value_weight);
      (parts.total / static_cast<double>(opt.grad_accum)).backward();
      loss += parts.total.item<double>() / opt.grad_accum;
      lm += parts.lm.item<double>() / opt.grad_accum;
      value += parts.value.item<double>() / opt.grad_accum;
    }
    const double grad_norm = clip_gradients(optimizer.params(), opt.grad_clip);
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
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
    const double lr = schedule.at(state.step);
    optimizer.step(lr);
    ++state.step;
    window_loss += lm;
    ++window_steps;

    if (state.step % opt.log_every == 0 || state.step == total_steps) {
      const auto now = Clock::now();
      const double window_s = std::chrono::duration<double>(now - window_start).count();
      const double tps = window_steps * tokens_per_step / window_s;
      const double mean = window_loss / window_steps;
      const double elapsed = std::chrono::duration<double>(now - run_start).count();
      const double eta = elapsed / (state.step - first_step) * (total_steps - state.step);
      nlohmann::json record = {{"step", state.step}, {"split", "train"}, {"loss", mean},
                               {"lr", lr},           {"tokens_per_s", tps}, {"grad_norm", grad_norm}};
      if (opt.value_loss) record["value_loss"] = value;
      metrics.write(record);
      std::printf("step %6lld/%lld | loss %.4f | ppl %8.2f | lr %.2e | %6.0f tok/s | ETA %s\n",
                  static_cast<long long>(state.step), static_cast<long long>(total_steps), mean,
                  std::exp(mean), lr, tps, format_duration(eta).c_str());
      std::fflush(stdout);
      window_loss = 0;
      window_steps = 0;
    }
    const bool last = state.step == total_steps;
    if ((opt.eval_every > 0 && state.step % opt.eval_every == 0) || last)
      result.final_val_loss = evaluate();
    if ((opt.save_every > 0 && state.step % opt.save_every == 0) || last) save();
    // Keeps evaluation and checkpoint time out of the next window's tokens/s.
    window_start = Clock::now();
  }
  result.steps = state.step;
  result.steps_run = state.step - first_step;
  return result;
}

}  // namespace crsm::train
