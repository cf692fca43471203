#include "train/training_loop.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>

#include "base/atomic_file.h"
#include "checkpoint/run_dir.h"
#include "dist/counting_communicator.h"
#include "dist/data_parallel.h"
#include "dist/device_memory.h"
#include "dist/runtime.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"
#include "metrics/metrics_writer.h"
#include "train/thread_shares.h"
#include "checkpoint/training_checkpoint.h"
#include "train/unit_gathering.h"

namespace crsm::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// The signal any rank received (the largest number), or 0; collective.
// "12m05s" or "2h03m".
std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

// Everything rank 0 tells the user and writes to metrics.jsonl; on the other ranks
// every call does nothing, so the loop itself never asks which rank it is.
class Reporter {
 public:
  Reporter(bool root, const LoopOptions& options) : root_(root), options_(options) {}

  void open_metrics(int64_t keep_through_step) {
    if (root_) metrics_.emplace(options_.run_dir, keep_through_step);
  }
  void line(const char* format, ...) __attribute__((format(printf, 2, 3))) {
    if (!root_) return;
    va_list args;
    va_start(args, format);
    std::vfprintf(stdout, format, args);
    va_end(args);
    std::fflush(stdout);
  }
  void resumed(const std::string& from, const checkpoint::TrainManifest& saved, int64_t step, int world, int stage) {
    if (!root_) return;
    std::printf("resume: continuing from %s at step %lld", from.c_str(), static_cast<long long>(step));
    if (saved.world_size != world || saved.zero_stage != stage)
      std::printf(" (saved by %d rank%s at zero stage %d; re-partitioned for %d rank%s at stage %d)",
                  saved.world_size, saved.world_size == 1 ? "" : "s", saved.zero_stage, world,
                  world == 1 ? "" : "s", stage);
    std::printf("\n");
    std::fflush(stdout);
  }
  void window(int64_t step, const Report& report, double lr, double rate, double grad_norm, double eta) {
    if (!root_) return;
    nlohmann::json record = {{"step", step}, {"split", "train"}};
    record.update(report.record);
    record["lr"] = lr;
    record[options_.rate_key] = rate;
    record["grad_norm"] = grad_norm;
    metrics_->write(record);
    std::printf("step %6lld/%lld | %s | lr %.2e | %6.0f %s | ETA %s\n", static_cast<long long>(step),
                static_cast<long long>(options_.total_steps), report.line.c_str(), lr, rate,
                options_.rate_unit.c_str(), format_duration(eta).c_str());
    std::fflush(stdout);
  }
  void validation(int64_t step, const Report& report) {
    if (!root_) return;
    nlohmann::json record = {{"step", step}, {"split", "val"}};
    record.update(report.record);
    metrics_->write(record);
    std::printf("step %6lld | val %s\n", static_cast<long long>(step), report.line.c_str());
    std::fflush(stdout);
  }
  void traffic(double sent, double analytic) {
    if (!root_ || analytic == 0) return;  // one rank sends nothing
    std::printf("communication: rank 0 sent %s for parameters and gradients in this step (analytic %s, %+.2f%%)\n",
                mib(static_cast<int64_t>(sent)).c_str(), mib(static_cast<int64_t>(analytic)).c_str(),
                100.0 * (sent - analytic) / analytic);
    std::fflush(stdout);
  }
  void memory(const at::Tensor& per_rank) {
    if (!root_) return;
    for (int64_t r = 0; r < per_rank.size(0); ++r) {
      const int64_t peak = per_rank[r][3].item<int64_t>();
      std::printf("memory: rank %lld holds params %s | grads %s | optimizer %s%s\n", static_cast<long long>(r),
                  mib(per_rank[r][0].item<int64_t>()).c_str(), mib(per_rank[r][1].item<int64_t>()).c_str(),
                  mib(per_rank[r][2].item<int64_t>()).c_str(),
                  peak > 0 ? (" | device peak " + mib(peak)).c_str() : "");
    }
    std::fflush(stdout);
  }
  void non_finite(int64_t step, double loss, double grad_norm, const std::string& last_checkpoint) {
    if (!root_) return;
    std::fprintf(stderr,
                 "train: non-finite %s at step %lld (loss %g, gradient norm %g); stopping. Checkpoints are "
                 "untouched%s%s\n",
                 std::isfinite(loss) ? "gradient" : "loss", static_cast<long long>(step), loss, grad_norm,
                 last_checkpoint.empty() ? "" : "; the last one is ", last_checkpoint.c_str());
  }

 private:
  bool root_;
  const LoopOptions& options_;
  std::optional<metrics::MetricsWriter> metrics_;
};

// Each rank's parameter, gradient and optimizer bytes and its device's peak (0 on the
// CPU), [world, 4] (collective).
at::Tensor gather_memory(const dist::DataParallel& dp, const AdamW& optimizer, dist::Communicator& comm,
                         const c10::Device& device) {
  const int world = comm.world_size(), rank = comm.rank();
  const auto m = dp.memory();
  auto all = torch::zeros({4 * world}, torch::kLong);
  all[4 * rank] = m.params;
  all[4 * rank + 1] = m.grads;
  all[4 * rank + 2] = optimizer.state_bytes();
  all[4 * rank + 3] = dist::device_peak_bytes(device);
  all = all.to(comm.device());
  comm.all_gather(all)->wait();
  return all.cpu().reshape({world, 4});
}

// The reported losses of one step, averaged over micro-batches and ranks, and whether
// any rank was signalled: one reduction, read once (on a GPU every read is a sync).
struct StepLosses {
  std::vector<double> means;
  bool preempted = false;
};

}  // namespace


bool preempted_in_startup(dist::Communicator& comm, const std::string& command) {
  const int sig = dist::preemption_signal_on_any_rank(comm);
  if (sig && comm.rank() == 0) {
    std::printf("%s: preempted by %s during start-up, before taking a step; nothing was written; resume "
                "with --resume auto\n",
                command.c_str(), dist::signal_name(sig).c_str());
    std::fflush(stdout);
  }
  return sig != 0;
}

TrainResult run_training_loop(Objective& objective, BatchSource& source, const LoopOptions& opt,
                              dist::Communicator& comm) {
  const int rank = comm.rank(), world = comm.world_size();
  const checkpoint::RunDir run(opt.run_dir);
  const std::string ckpt_root = run.checkpoints();
  Reporter report(rank == 0, opt);

  const auto trainable = objective.trainable();
  dist::DataParallelOptions dp_options;
  dp_options.zero_stage = opt.zero_stage;
  dp_options.bucket_bytes = opt.bucket_bytes;
  dp_options.prefetch = opt.prefetch;
  // The parameters' and gradients' traffic is counted, to be set against the analytic volume.
  dist::CountingCommunicator counted(comm);
  dist::DataParallel dp(trainable.params, trainable.decay, counted, dp_options, trainable.units);
  std::optional<UnitGathering> gathering;
  if (dp.sharded_parameters()) gathering.emplace(*dp.sharded_parameters());
  objective.set_unit_hooks(gathering ? &*gathering : nullptr);
  // Unhooked before the gathering and the shards go, however the loop ends.
  struct Unhook {
    Objective& objective;
    ~Unhook() { objective.set_unit_hooks(nullptr); }
  } unhook{objective};
  const ThreadUseInputs thread_inputs{opt.batch_split,  objective.module().parameters().front().device().is_cpu(),
                                      at::get_num_threads(), source.rows() / opt.grad_accum,
                                      gathering.has_value(), objective.draws_random_numbers()};
  const ThreadUse thread_use = choose_thread_use(thread_inputs);
  std::vector<at::Tensor> params;
  for (const auto& named : trainable.params) params.push_back(named.second);
  AdamW optimizer(optimizer_slots(dp), {0.9, 0.95, 1e-8, opt.weight_decay});
  const checkpoint::ShardingInfo sharding = checkpoint::sharding_of(dp.layout(), opt.zero_stage);

  checkpoint::TrainState state;
  state.stage = opt.stage;
  state.value_loss = opt.stage == "finetune";
  torch::manual_seed(checkpoint::rank_seed(opt.seed, rank));
  if (opt.continue_from) {
    const checkpoint::TrainManifest manifest = checkpoint::read_train_manifest(*opt.continue_from);
    state = checkpoint::load_train_state(*opt.continue_from, manifest, optimizer, rank, opt.seed);
    source.set_position(state.sampler);
    report.resumed(*opt.continue_from, manifest, state.step, world, opt.zero_stage);
  }
  TrainResult result;
  result.steps = state.step;
  if (preempted_in_startup(comm, "train")) {
    result.exit_status = kExitPreempted;
    return result;
  }
  if (rank == 0) {
    fs::create_directories(ckpt_root);
    base::write_file_atomically(run.config(), opt.config.dump(2) + "\n");
  }
  report.open_metrics(opt.continue_from ? state.step : -1);
  if (opt.created) opt.created->keep();
  report.line("%s\n", opt.banner.c_str());
  if (const auto threads = describe_thread_use(thread_inputs); !threads.empty())
    report.line("%s\n", threads.c_str());

  if (state.step >= opt.total_steps) {
    report.line("train: %s already reached step %lld of %lld; nothing to do\n", opt.continue_from->c_str(),
                static_cast<long long>(state.step), static_cast<long long>(opt.total_steps));
    result.last_checkpoint = *opt.continue_from;
    return result;
  }

  checkpoint::CheckpointContents contents{&objective.module(), opt.write_files, opt.config, opt.manifest_extra};
  auto save = [&] {
    state.sampler = source.position();
    result.last_checkpoint =
        checkpoint::save_train_checkpoint(ckpt_root, state, contents, optimizer, sharding, opt.keep_last, comm);
  };
  auto evaluate = [&] {
    const Report r = objective.validate(comm);
    report.validation(state.step, r);
    result.final_validation = r.record;
    result.final_val_loss = r.record.value("loss", 0.0);
  };

  const LrSchedule schedule{opt.lr, opt.lr * opt.min_lr_ratio, opt.warmup_steps, opt.total_steps};
  const int64_t first_step = state.step;
  double run_seconds = 0;
  auto& window = state.window;
  while (state.step < opt.total_steps) {
    const auto step_start = Clock::now();
    counted.reset();
    const Batch batch = source.next();
    const int64_t micro = batch.at(0).size(0) / opt.grad_accum;
    dp.zero_grad();
    at::Tensor shared;  // the reported losses, then the preemption flag
    for (int64_t k = 0; k < opt.grad_accum; ++k) {
      dp.begin_micro_batch(k + 1 == opt.grad_accum);
      Batch part;
      for (const auto& t : batch) part.push_back(t.narrow(0, k * micro, micro));
      std::vector<at::Tensor> reported = forward_backward(
          thread_use, [&](const Batch& rows) { return objective.losses(rows); }, part, params,
          1.0 / static_cast<double>(opt.grad_accum), opt.precision);
      dp.end_micro_batch();
      for (auto& r : reported) r = r.to(torch::kDouble);
      reported.push_back(torch::zeros({}, reported[0].options()));
      const auto stacked = torch::stack(reported) / static_cast<double>(opt.grad_accum);
      shared = shared.defined() ? shared + stacked : stacked;
    }
    const int64_t n = shared.size(0) - 1;
    if (dist::preemption_signalled()) shared[n] = 1.0;
    dist::all_reduce_now(comm, shared);
    shared = shared.cpu();
    StepLosses step_losses;
    for (int64_t i = 0; i < n; ++i) step_losses.means.push_back(shared[i].item<double>() / world);
    step_losses.preempted = shared[n].item<double>() > 0;

    const double grad_norm = dp.grad_norm();
    const double headline = step_losses.means[0];
    if (!std::isfinite(headline) || !std::isfinite(grad_norm)) {
      report.non_finite(state.step + 1, headline, grad_norm, result.last_checkpoint);
      result.exit_status = kExitNonFinite;
      return result;
    }
    if (opt.grad_clip > 0 && grad_norm > opt.grad_clip) dp.scale_grads(opt.grad_clip / (grad_norm + 1e-6));
    const double lr = schedule.at(state.step);
    optimizer.step(lr, dp.owned_grads());
    dp.gather_params();
    ++state.step;
    const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    run_seconds += step_seconds;
    window.seconds += step_seconds;
    window.sums.resize(step_losses.means.size(), 0.0);
    for (size_t i = 0; i < step_losses.means.size(); ++i) window.sums[i] += step_losses.means[i];
    ++window.steps;
    if (state.step == first_step + 1) {
      report.traffic(counted.bytes_sent(), dp.analytic_bytes_per_step(static_cast<int>(opt.grad_accum)));
      report.memory(gather_memory(dp, optimizer, comm, objective.module().parameters().front().device()));
    }

    const bool last = state.step == opt.total_steps;
    if (state.step % opt.log_every == 0 || last) {
      std::vector<double> means;
      for (double sum : window.sums) means.push_back(sum / window.steps);
      const double rate = window.steps * opt.items_per_step / window.seconds;
      const double eta = run_seconds / (state.step - first_step) * (opt.total_steps - state.step);
      report.window(state.step, objective.train_report(means), lr, rate, grad_norm, eta);
      window = checkpoint::LogWindow{};
    }
    if ((opt.eval_every > 0 && state.step % opt.eval_every == 0) || last) evaluate();
    if ((opt.save_every > 0 && state.step % opt.save_every == 0) || last || step_losses.preempted) save();
    if (step_losses.preempted && !last) {
      const int sig = dist::preemption_signal_on_any_rank(comm);
      report.line("train: preempted by %s: checkpoint %s written at step %lld; resume with --resume auto\n",
                  dist::signal_name(sig).c_str(), result.last_checkpoint.c_str(),
                  static_cast<long long>(state.step));
      result.exit_status = kExitPreempted;
      break;
    }
  }
  result.steps = state.step;
  result.steps_run = state.step - first_step;
  return result;
}

}  // namespace crsm::train
