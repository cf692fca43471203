#include "train/training_loop.h"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>

#include "base/atomic_file.h"
#include "checkpoint/run_dir.h"
#include "dist/runtime.h"
#include "metrics/metrics_writer.h"
#include "train/engine.h"
#include "train/lr_schedule.h"
#include "train/step_cost.h"
#include "train/step_trace.h"

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

// Everything rank 0 tells the user and writes to metrics.jsonl (and its TensorBoard event
// files); on the other ranks every call does nothing, so the loop itself never asks which
// rank it is.
class Reporter {
 public:
  Reporter(bool root, const LoopOptions& options) : root_(root), options_(options) {}

  void open_metrics(int64_t keep_through_step) {
    if (root_) metrics_.emplace(options_.run_dir, keep_through_step, options_.tensorboard_dir);
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
  void window(int64_t step, const Report& report, double lr, double rate, double grad_norm, double eta,
              const nlohmann::json& cost) {
    if (!root_) return;
    nlohmann::json record = {{"step", step}, {"split", "train"}};
    record.update(report.record);
    record["lr"] = lr;
    record[options_.rate_key] = rate;
    record["grad_norm"] = grad_norm;
    record.update(cost);
    metrics_->write(record);
    std::printf("step %6lld/%lld | %s | lr %.2e | %6.0f %s | ETA %s\n", static_cast<long long>(step),
                static_cast<long long>(options_.schedule.total_steps), report.line.c_str(), lr, rate,
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

// Whether a cadence of `every` steps (0: never) falls on `step`.
bool due(int64_t step, int64_t every) { return every > 0 && step % every == 0; }

void add_to_window(checkpoint::LogWindow& window, const std::vector<double>& losses, double seconds) {
  window.seconds += seconds;
  window.sums.resize(losses.size(), 0.0);
  for (size_t i = 0; i < losses.size(); ++i) window.sums[i] += losses[i];
  ++window.steps;
}

std::vector<double> window_means(const checkpoint::LogWindow& window) {
  std::vector<double> means;
  for (double sum : window.sums) means.push_back(sum / window.steps);
  return means;
}

// The run's directory, config and metrics as a (re)started run leaves them, and its
// first lines.
void start_run(Reporter& report, const checkpoint::RunDir& run, const LoopOptions& opt, const Engine& engine,
               const checkpoint::TrainState& state, int rank) {
  if (rank == 0) {
    fs::create_directories(run.checkpoints());
    base::write_file_atomically(run.config(), opt.config.dump(2) + "\n");
    if (!opt.run_info.is_null()) base::append_line_atomically(run.run_info(), opt.run_info.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  report.open_metrics(opt.continue_from ? state.step : -1);
  if (opt.created) opt.created->keep();
  report.line("%s\n", opt.banner.c_str());
  if (const auto threads = engine.describe_threads(); !threads.empty()) report.line("%s\n", threads.c_str());
}

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
  const int rank = comm.rank();
  const checkpoint::RunDir run(opt.run_dir);
  check_trace_steps(opt.profile, opt.schedule.total_steps);
  Reporter report(rank == 0, opt);
  Engine engine(objective, opt.parallel, opt.optimizer, source.rows(), comm, opt.profile.sync_timers);
  checkpoint::TrainState state;
  state.stage = opt.stage;
  torch::manual_seed(checkpoint::rank_seed(opt.seed, rank));
  if (opt.continue_from) {
    const checkpoint::TrainManifest manifest = checkpoint::read_train_manifest(*opt.continue_from);
    state = checkpoint::load_train_state(*opt.continue_from, manifest, engine.optimizer(), rank, opt.seed);
    source.set_position(state.sampler);
    report.resumed(*opt.continue_from, manifest, state.step, comm.world_size(), opt.parallel.zero.stage);
  }
  TrainResult result;
  result.steps = state.step;
  if (preempted_in_startup(comm, "train")) {
    result.exit_status = kExitPreempted;
    return result;
  }
  start_run(report, run, opt, engine, state, rank);
  if (state.step >= opt.schedule.total_steps) {
    report.line("train: %s already reached step %lld of %lld; nothing to do\n", opt.continue_from->c_str(),
                static_cast<long long>(state.step), static_cast<long long>(opt.schedule.total_steps));
    result.last_checkpoint = *opt.continue_from;
    return result;
  }
  const checkpoint::CheckpointContents contents{&objective.module(), opt.write_files, opt.config, opt.manifest_extra};
  const auto save = [&] {
    RECORD_USER_SCOPE("crsm::checkpoint_save");  // the profiler's range (--profile-steps)
    state.sampler = source.position();
    result.last_checkpoint = checkpoint::save_train_checkpoint(run.checkpoints(), state, contents, engine.optimizer(),
                                                               engine.sharding(), opt.cadence.keep_last, comm);
  };
  const auto evaluate = [&] {
    const Report r = objective.validate(comm);
    report.validation(state.step, r);
    result.final_validation = r.record;
    result.final_val_loss = r.record.value("loss", 0.0);
  };
  const LrSchedule schedule{opt.optimizer.lr, opt.optimizer.lr * opt.optimizer.min_lr_ratio,
                            opt.schedule.warmup_steps, opt.schedule.total_steps};
  const int64_t first_step = state.step;
  double run_seconds = 0;
  StepCost cost(opt.profile, engine.device(), engine.trainable_parameters());
  if (cost.peak_tflops() > 0)
    report.line("mfu: 6N FLOPs per item, N = %lld trainable parameters, against %g TFLOP/s per device (%s)\n",
                static_cast<long long>(engine.trainable_parameters()), cost.peak_tflops(), cost.peak_source().c_str());
  StepTrace trace(opt.profile, run.trace(rank), rank);
  while (state.step < opt.schedule.total_steps) {
    trace.before(state.step + 1);
    const auto started = Clock::now();
    engine.reset_traffic();
    const double lr = schedule.at(state.step);
    const Engine::StepResult step = engine.step(source.next(), lr);
    if (!step.finite()) {
      report.non_finite(state.step + 1, step.losses[0], step.grad_norm, result.last_checkpoint);
      result.exit_status = kExitNonFinite;
      return result;
    }
    ++state.step;
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    run_seconds += seconds;
    add_to_window(state.window, step.losses, seconds);
    cost.add(step.phases, seconds);
    if (state.step == first_step + 1) {
      report.traffic(engine.bytes_sent(), engine.analytic_bytes_per_step());
      report.memory(engine.memory_per_rank());
    }
    const bool last = state.step == opt.schedule.total_steps;
    if (due(state.step, opt.cadence.log_every) || last) {
      const double eta = run_seconds / (state.step - first_step) * (opt.schedule.total_steps - state.step);
      const double rate = state.window.steps * opt.items_per_step / state.window.seconds;
      report.window(state.step, objective.train_report(window_means(state.window)), lr, rate, step.grad_norm, eta,
                    cost.window(comm, rate));
      state.window = checkpoint::LogWindow{};
    }
    if (due(state.step, opt.cadence.eval_every) || last) evaluate();
    if (due(state.step, opt.cadence.save_every) || last || step.preempted) save();
    trace.after(state.step, step.preempted);
    if (step.preempted && !last) {
      report.line("train: preempted by %s: checkpoint %s written at step %lld; resume with --resume auto\n",
                  dist::signal_name(dist::preemption_signal_on_any_rank(comm)).c_str(),
                  result.last_checkpoint.c_str(), static_cast<long long>(state.step));
      result.exit_status = kExitPreempted;
      break;
    }
  }
  result.steps = state.step;
  result.steps_run = state.step - first_step;
  return result;
}

}  // namespace crsm::train
