// Distributed benchmarks: what data parallelism over MPI costs and what it buys.
//   allreduce   bus bandwidth of our Communicator's all_reduce against a plain
//               MPI_Allreduce on the same buffer;
//   overlap     one gradient step under DataParallel with reductions launched from
//               autograd hooks (overlapping backward) against reducing after backward;
//   throughput  tokens/s of full training steps at the world size we were launched with
//               (bench/run_dist_bench.sh compares W=1 with W=2);
//   checkpoint  SHA-256 throughput of the reference and the accelerated kernel, and
//               --resume verification of a checkpoint by rank 0 alone against split
//               across the ranks.
// Run: mpirun -np 2 crsm_bench_dist [--json] [--quick]. Only rank 0 prints: a table, or
// with --json one JSON object per measurement.
//
// Every timed round is bracketed by a barrier and reports the slowest rank's time (a
// collective step is as slow as its slowest rank). Rounds of the variants being
// compared are interleaved, so a disturbance (another process on these cores) hits
// each alike, and the median round is reported.
#include <mpi.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_cli.h"
#include "config/run_config.h"
#include "dist/communicator.h"
#include "data/temp_dir.h"
#include "checkpoint/store.h"
#include "dist/cpu_setup.h"
#include "dist/counting_communicator.h"
#include "dist/data_parallel.h"
#include "checkpoint/resume_across_ranks.h"
#include "dist/runtime.h"
#include "checkpoint/sha256.h"
#include "dist/zero_policy.h"
#include "model/backbone.h"
#include "model/cpu_kernels.h"
#include "train/adamw.h"
#include "train/engine.h"
#include "train/lm_objective.h"
#include "train/lm_loss.h"
#include "train/thread_shares.h"
#include "train/trainable.h"
#include "train/unit_gathering.h"

namespace {

using Clock = std::chrono::steady_clock;
using crsm::dist::Communicator;
using crsm::dist::ReduceOp;

struct Options {
  bool json = false;
  bool quick = false;
  int threads = 0;
  std::string config;
  std::string only;  // empty: every benchmark
  int zero_stage = 0;
};

using crsm::bench::format;
using crsm::bench::Report;

// ---- timing that every rank agrees on -------------------------------------------------

// Seconds per call of `fn` over `calls` calls, as the slowest rank saw it. Every rank
// must make the same number of calls (they are collectives), so the count is never
// decided from a rank's own clock alone.
double timed_round(Communicator& comm, const std::function<void()>& fn, int calls) {
  comm.barrier();
  const auto start = Clock::now();
  for (int i = 0; i < calls; ++i) fn();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return crsm::dist::all_reduce_scalar(comm, elapsed, ReduceOp::kMax) / calls;
}

// Calls per round so that a round lasts about `round_seconds`, after a warm-up call.
int calls_per_round(Communicator& comm, const std::function<void()>& fn, double round_seconds) {
  fn();  // warm-up: first-touch allocations, MPI connection setup, thread pools
  int probe = 1;
  double per_call = timed_round(comm, fn, probe);
  // Tiny calls are dominated by the barrier and clock; probe with more until it is not.
  while (per_call * probe < 0.01 && probe < (1 << 16)) {
    probe *= 4;
    per_call = timed_round(comm, fn, probe);
  }
  return std::max(1, static_cast<int>(std::ceil(round_seconds / per_call)));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median seconds per call of each variant, their rounds interleaved. `seconds` is the
// time budget for all variants together.
std::vector<double> compare(Communicator& comm, const std::vector<std::function<void()>>& variants,
                            double seconds, int rounds = 7) {
  const double round_seconds = seconds / (rounds * static_cast<double>(variants.size()));
  std::vector<int> calls;
  for (const auto& fn : variants) calls.push_back(calls_per_round(comm, fn, round_seconds));
  std::vector<std::vector<double>> per_round(variants.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t v = 0; v < variants.size(); ++v)
      per_round[v].push_back(timed_round(comm, variants[v], calls[v]));
  std::vector<double> medians;
  for (auto& rs : per_round) medians.push_back(median(rs));
  return medians;
}

// ---- 1. all-reduce bus bandwidth ------------------------------------------------------

std::string size_label(int64_t bytes) {
  if (bytes >= (1 << 20)) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

// NCCL-tests' bus bandwidth: what each link carries in a ring all-reduce, so figures
// are comparable across world sizes.
double bus_gbps(int64_t bytes, int world, double seconds) {
  return static_cast<double>(bytes) * 2.0 * (world - 1) / world / seconds / 1e9;
}

void bench_allreduce(Report& report, Communicator& comm, const Options& opt) {
  const int world = comm.world_size();
  if (world < 2) {
    report.line("allreduce: skipped (world size 1: nothing to reduce; launch with mpirun -np 2)");
    return;
  }
  const int64_t max_bytes = opt.quick ? (16 << 20) : (64 << 20);
  for (int64_t bytes = 1 << 10; bytes <= max_bytes; bytes *= 4) {
    // Zeros: sums stay zero, so repeated in-place reductions never overflow into inf
    // or drift into denormals, either of which could change the arithmetic's speed.
    auto buffer = torch::zeros({bytes / 4}, torch::kFloat);
    auto ours = [&] { comm.all_reduce(buffer, ReduceOp::kSum)->wait(); };
    auto plain = [&] {
      MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr<float>(), static_cast<int>(buffer.numel()),
                    MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    };
    // Our path is MPI_Iallreduce + MPI_Wait underneath; timing that bare tells the
    // wrapper's cost apart from the nonblocking collective's own.
    auto bare_nonblocking = [&] {
      MPI_Request request;
      MPI_Iallreduce(MPI_IN_PLACE, buffer.data_ptr<float>(), static_cast<int>(buffer.numel()),
                     MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
      MPI_Wait(&request, MPI_STATUS_IGNORE);
    };
    const auto s = compare(comm, {ours, plain, bare_nonblocking}, opt.quick ? 0.45 : 2.0);
    const double ours_bw = bus_gbps(bytes, world, s[0]), plain_bw = bus_gbps(bytes, world, s[1]);
    const double bare_bw = bus_gbps(bytes, world, s[2]);
    report.row("allreduce " + size_label(bytes),
               {{"bytes", bytes}, {"world_size", world}, {"ours_us", s[0] * 1e6},
                {"mpi_us", s[1] * 1e6}, {"mpi_iallreduce_us", s[2] * 1e6},
                {"ours_busbw_gbps", ours_bw}, {"mpi_busbw_gbps", plain_bw},
                {"mpi_iallreduce_busbw_gbps", bare_bw}, {"ratio", ours_bw / plain_bw}},
               format("ours %8.1f us %6.3f GB/s | MPI_Allreduce %8.1f us %6.3f GB/s | ratio %.2f"
                      " | bare MPI_Iallreduce %6.3f GB/s",
                      s[0] * 1e6, ours_bw, s[1] * 1e6, plain_bw, ours_bw / plain_bw, bare_bw));
  }
}

// ---- the model and its data -----------------------------------------------------------

constexpr int64_t kGlobalBatch = 12, kSeqLen = 64;

// A small-config model whose trainable parameters are those of stage-1 training: the
// value heads are frozen there (their hooks would never fire and would hold back the
// bucket they sit in), so they are here too.
struct TrainableModel {
  crsm::model::Backbone model{nullptr};
  std::vector<std::pair<std::string, at::Tensor>> params;
  std::vector<bool> decay;
  std::vector<int> units;
};

TrainableModel make_model(const crsm::RunConfig& cfg) {
  torch::manual_seed(0);  // identical start on every rank (DataParallel broadcasts anyway)
  TrainableModel m;
  m.model = crsm::model::Backbone(cfg.model);
  m.model->train();
  auto trainable = crsm::train::trainable_parameters(m.model, /*value_heads=*/false);
  m.params = std::move(trainable.params);
  m.decay = std::move(trainable.decay);
  m.units = std::move(trainable.units);
  return m;
}

// This rank's share of the global batch: random windows [12 / W, 64 + 1]; each rank
// draws different tokens, as a sampler would give it different data.
at::Tensor local_windows(const crsm::RunConfig& cfg, Communicator& comm) {
  if (kGlobalBatch % comm.world_size() != 0)
    throw std::runtime_error("global batch " + std::to_string(kGlobalBatch) +
                             " does not split over " + std::to_string(comm.world_size()) + " ranks");
  torch::manual_seed(1000 + comm.rank());
  return torch::randint(0, cfg.model.vocab_size, {kGlobalBatch / comm.world_size(), kSeqLen + 1},
                        torch::kLong);
}

// One gradient step as the trainer takes it, without the optimizer. When `waits` is
// given it collects how long end_micro_batch() blocked: the communication still
// outstanding when backward returned. Over shared memory that is not the whole cost of
// communicating: the copies and sums of a collective in flight run on this core inside
// the MPI_Test calls DataParallel's hooks make, i.e. within backward. Step times are the
// verdict; waits show where the time went.
void gradient_step(crsm::dist::DataParallel& dp, crsm::model::Backbone& model,
                   const at::Tensor& windows, std::vector<double>* waits = nullptr,
                   crsm::train::ThreadUse use = crsm::train::ThreadUse::kPerOp) {
  dp.zero_grad();
  dp.begin_micro_batch(/*last=*/true);
  std::vector<at::Tensor> params;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) params.push_back(p);
  const auto losses = [&](const std::vector<at::Tensor>& rows) -> std::vector<at::Tensor> {
    const auto parts = crsm::train::lm_loss(model, rows[0], 0.0);
    return {parts.total, parts.lm};
  };
  crsm::train::forward_backward(use, losses, {windows}, params, 1.0, crsm::train::Precision::kFloat32);
  const auto backward_done = Clock::now();
  dp.end_micro_batch();
  if (waits) waits->push_back(std::chrono::duration<double>(Clock::now() - backward_done).count());
}

// ---- 2. overlapping gradient reduction with backward ----------------------------------

void bench_overlap(Report& report, Communicator& comm, const crsm::RunConfig& cfg,
                   const Options& opt) {
  const auto windows = local_windows(cfg, comm);
  for (const int64_t bucket_bytes : {int64_t{4} << 20, int64_t{256} << 10}) {
    // A copy of the model per variant: DataParallel rewires a model's parameters into
    // its flat buffer and hooks them, so variants cannot share one.
    auto overlapped = make_model(cfg), after = make_model(cfg), alone = make_model(cfg);
    crsm::dist::DataParallelOptions o;
    o.bucket_bytes = bucket_bytes;
    crsm::dist::DataParallel dp_overlap(overlapped.params, overlapped.decay, comm, o);
    o.reduce_after_backward = true;
    crsm::dist::DataParallel dp_after(after.params, after.decay, comm, o);
    // Forward and backward with no DataParallel: how much time reduction adds at all,
    // which bounds what overlapping it could save.
    auto compute_only = [&] {
      alone.model->zero_grad();
      crsm::train::lm_loss(alone.model, windows, 0.0).total.backward();
    };
    std::vector<double> overlap_waits, after_waits;
    const auto s = compare(
        comm,
        {[&] { gradient_step(dp_overlap, overlapped.model, windows, &overlap_waits); },
         [&] { gradient_step(dp_after, after.model, windows, &after_waits); }, compute_only},
        opt.quick ? 2.0 : 12.0, opt.quick ? 5 : 11);
    // This rank's median; the table shows rank 0's (ranks differ little: same work).
    const double overlap_wait = median(overlap_waits), after_wait = median(after_waits);
    const auto buckets = static_cast<int64_t>(dp_overlap.layout().buckets().size());
    const double grad_mib = dp_overlap.layout().total() * 4.0 / (1 << 20);
    report.row("overlap bucket " + size_label(bucket_bytes),
               {{"bucket_bytes", bucket_bytes}, {"buckets", buckets}, {"grad_mib", grad_mib},
                {"world_size", comm.world_size()}, {"local_batch", windows.size(0)},
                {"overlap_ms", s[0] * 1e3}, {"after_backward_ms", s[1] * 1e3},
                {"backward_only_ms", s[2] * 1e3}, {"speedup", s[1] / s[0]},
                {"overlap_wait_ms", overlap_wait * 1e3}, {"after_backward_wait_ms", after_wait * 1e3}},
               format("%2lld bucket%s, %.1f MiB in all | overlapped %6.1f ms (waits %5.2f) | after "
                      "backward %6.1f ms (waits %5.2f) | speed-up %.3f | no reduction %6.1f ms",
                      static_cast<long long>(buckets), buckets == 1 ? " " : "s", grad_mib,
                      s[0] * 1e3, overlap_wait * 1e3, s[1] * 1e3, after_wait * 1e3, s[1] / s[0],
                      s[2] * 1e3));
  }
}

// ---- 3. training throughput -----------------------------------------------------------

// A model and the engine that trains it, as crsm_train's stage 1 does: one engine step is
// what a training step costs (forward and backward per micro-batch, the reduction of the
// losses, the gradient norm and clipping, AdamW, the gather).
struct Trainer {
  std::unique_ptr<crsm::train::LanguageModelObjective> objective;
  std::unique_ptr<crsm::train::Engine> engine;
};

Trainer make_trainer(const crsm::RunConfig& cfg, Communicator& comm, crsm::train::ParallelOptions parallel,
                     int64_t rows) {
  torch::manual_seed(0);  // identical start on every rank (DataParallel broadcasts anyway)
  crsm::model::Backbone model(cfg.model);
  model->train();
  Trainer t;
  t.objective = std::make_unique<crsm::train::LanguageModelObjective>(
      model, crsm::checkpoint::Stage::kBackbone, 0.0, torch::zeros({0, kSeqLen + 1}, torch::kLong), 1,
      parallel.precision);
  crsm::train::OptimizerOptions optimizer;
  optimizer.lr = cfg.train.lr;
  t.engine = std::make_unique<crsm::train::Engine>(*t.objective, parallel, optimizer, rows, comm);
  return t;
}

void bench_throughput(Report& report, Communicator& comm, const crsm::RunConfig& cfg,
                      const Options& opt) {
  const auto windows = local_windows(cfg, comm);
  // The step as crsm_train takes it (each thread its share of the rows where it can, fused
  // paths), with each op spread over the threads instead, and that with the plain references.
  crsm::train::ParallelOptions parallel;
  parallel.zero = crsm::dist::ZeroPolicy::for_stage(opt.zero_stage);
  auto as_chosen = make_trainer(cfg, comm, parallel, windows.size(0));
  parallel.batch_split = false;
  auto per_op = make_trainer(cfg, comm, parallel, windows.size(0));
  using crsm::train::ThreadUse;
  const ThreadUse chosen = as_chosen.engine->thread_use();
  const auto step_with = [&](crsm::train::Engine& engine, bool fused) {
    return [&, fused] {
      crsm::model::set_fused_cpu_kernels(fused);
      engine.step({windows}, cfg.train.lr);
    };
  };
  const auto times = compare(comm,
                             {step_with(*as_chosen.engine, true), step_with(*per_op.engine, true),
                              step_with(*per_op.engine, false)},
                             opt.quick ? 1.5 : 6.0, opt.quick ? 5 : 9);
  crsm::model::set_fused_cpu_kernels(true);
  const double s = times[0], per_op_s = times[1], plain = times[2];
  const double tokens = kGlobalBatch * kSeqLen;
  const int threads = at::get_num_threads();
  report.row("train step W=" + std::to_string(comm.world_size()),
             {{"world_size", comm.world_size()}, {"threads_per_rank", threads},
              {"zero_stage", opt.zero_stage}, {"global_batch", kGlobalBatch}, {"seq_len", kSeqLen},
              {"per_share", chosen == ThreadUse::kPerShare},
              {"ms_per_step", s * 1e3}, {"tokens_per_s", tokens / s}, {"per_op_tokens_per_s", tokens / per_op_s},
              {"plain_kernels_tokens_per_s", tokens / plain}},
             format("%9.0f tokens/s  (%.2f ms/step, %d rank%s x %d thread%s, zero stage %d, %s); each op over the threads "
                    "%.0f tokens/s (%.2fx), and with plain kernels %.0f tokens/s (%.2fx)",
                    tokens / s, s * 1e3, comm.world_size(), comm.world_size() == 1 ? "" : "s", threads,
                    threads == 1 ? "" : "s", opt.zero_stage,
                    chosen == ThreadUse::kPerShare ? "each thread its share" : threads == 1 ? "one thread" : "each op over the threads",
                    tokens / per_op_s, per_op_s / s, tokens / plain, plain / s));

  // The optimizer alone: AdamW's one-pass update against its plain tensor operations.
  auto& adamw = as_chosen.engine->optimizer();
  const auto& dp = as_chosen.engine->data_parallel();
  auto update_with = [&](bool fused) {
    return [&, fused] {
      crsm::model::set_fused_cpu_kernels(fused);
      adamw.step(1e-6, dp.owned_grads());
    };
  };
  const auto updates = compare(comm, {update_with(true), update_with(false)}, opt.quick ? 0.5 : 2.0, opt.quick ? 5 : 9);
  crsm::model::set_fused_cpu_kernels(true);
  report.row("adamw step W=" + std::to_string(comm.world_size()),
             {{"world_size", comm.world_size()}, {"threads_per_rank", threads}, {"fused_ms", updates[0] * 1e3},
              {"plain_ms", updates[1] * 1e3}},
             format("%9.2f ms one pass over the rank's slots; plain tensor operations %.2f ms (%.2fx)",
                    updates[0] * 1e3, updates[1] * 1e3, updates[1] / updates[0]));
}

// ---- 4. ZeRO stages: step time and traffic ----------------------------------------------

// One training step (the engine's) at each of stage 0, 2 and 3 (with and without
// prefetch), interleaved: step time, the bytes this rank asked to send against the
// analytic volume, and at stage 3 how long it waited for gathers.
void bench_zero(Report& report, Communicator& comm, const crsm::RunConfig& cfg, const Options& opt) {
  const auto windows = local_windows(cfg, comm);
  struct Variant {
    std::string name;
    int stage;
    bool prefetch;
    Trainer trainer;
    int64_t steps = 0;
  };
  std::vector<std::unique_ptr<Variant>> variants;
  for (const auto& [name, stage, prefetch] : std::vector<std::tuple<std::string, int, bool>>{
           {"stage 0", 0, true}, {"stage 2", 2, true}, {"stage 3", 3, true}, {"stage 3, no prefetch", 3, false}}) {
    crsm::train::ParallelOptions parallel;
    parallel.zero = crsm::dist::ZeroPolicy::for_stage(stage);
    parallel.prefetch = prefetch;
    variants.push_back(std::make_unique<Variant>(Variant{name, stage, prefetch,
                                                         make_trainer(cfg, comm, parallel, windows.size(0))}));
    variants.back()->trainer.engine->reset_traffic();
  }
  std::vector<std::function<void()>> steps;
  for (auto& v : variants)
    steps.push_back([&v = *v, &windows, &cfg] {
      v.trainer.engine->step({windows}, cfg.train.lr);
      ++v.steps;
    });
  const auto times = compare(comm, steps, opt.quick ? 4.0 : 16.0, opt.quick ? 5 : 9);
  const double stage2 = times[1];
  for (size_t i = 0; i < variants.size(); ++i) {
    auto& v = *variants[i];
    auto& engine = *v.trainer.engine;
    const double analytic = engine.analytic_bytes_per_step();
    // Each step also reduces its losses (a few bytes): the parameters' traffic dominates.
    const double sent = engine.bytes_sent() / static_cast<double>(v.steps);
    const auto* sharded = engine.data_parallel().sharded_parameters();
    const double waited_ms = sharded ? sharded->gather_wait_seconds() / static_cast<double>(v.steps) * 1e3 : 0.0;
    const auto held = engine.data_parallel().memory();
    report.row("zero " + v.name + " W=" + std::to_string(comm.world_size()),
               {{"world_size", comm.world_size()}, {"zero_stage", v.stage}, {"prefetch", v.prefetch},
                {"ms_per_step", times[i] * 1e3}, {"ratio_to_stage_2", times[i] / stage2},
                {"sent_mib_per_step", sent / (1 << 20)}, {"analytic_mib_per_step", analytic / (1 << 20)},
                {"gather_wait_ms_per_step", waited_ms},
                {"params_mib", held.params / double(1 << 20)}, {"grads_mib", held.grads / double(1 << 20)}},
               format("%7.1f ms/step (%.2fx stage 2) | sent %6.2f MiB/step, analytic %6.2f (%+.1f%%) | gather waits "
                      "%5.1f ms/step | params %.2f + grads %.2f MiB",
                      times[i] * 1e3, times[i] / stage2, sent / (1 << 20), analytic / (1 << 20),
                      analytic > 0 ? 100 * (sent - analytic) / analytic : 0.0, waited_ms, held.params / double(1 << 20),
                      held.grads / double(1 << 20)));
  }
}

// ---- 5. checkpoint hashing and verification --------------------------------------------

void bench_sha256(Report& report, Communicator& comm, const Options& opt) {
  std::vector<uint8_t> data(static_cast<size_t>(opt.quick ? 16 : 64) << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  // Against reading the same bytes once (summed eight at a time): hashing's cost next to
  // the least any pass over a checkpoint's files costs.
  volatile uint64_t sink = 0;  // what the passes compute is kept, so they are not optimized away
  const auto read = [&] {
    uint64_t sum = 0;
    for (size_t i = 0; i + 8 <= data.size(); i += 8) {
      uint64_t word;
      std::memcpy(&word, data.data() + i, 8);
      sum += word;
    }
    sink = sink + sum;
  };
  const auto hash = [&] {
    crsm::checkpoint::Sha256 h;
    h.update(data.data(), data.size());
    sink = sink + h.hex_digest().size();
  };
  const auto s = compare(comm, {read, hash}, opt.quick ? 1.5 : 4.0);
  const double mb = static_cast<double>(data.size()) / 1e6;
  report.row("sha256 per rank", {{"bytes", data.size()}, {"read_mb_per_s", mb / s[0]}, {"sha256_mb_per_s", mb / s[1]}},
             format("reading %7.0f MB/s | SHA-256 (OpenSSL) %7.0f MB/s | hashing costs %.1fx a read", mb / s[0], mb / s[1], s[1] / s[0]));
}

// A checkpoint shaped like one of `crsm_train` at this world size: the model, and one
// optimizer file per rank holding its share of the two AdamW moments (twice the model).
void bench_verification(Report& report, Communicator& comm, const Options& opt) {
  const int world = comm.world_size();
  if (world < 2) {
    report.line("verify: skipped (world size 1: nothing to split; launch with mpirun -np 2)");
    return;
  }
  const int64_t model_bytes = static_cast<int64_t>(opt.quick ? 32 : 256) << 20;
  std::optional<crsm::data::TempDir> scratch;
  std::string checkpoint;
  if (comm.rank() == 0) {
    scratch.emplace(std::filesystem::temp_directory_path().string(), "crsm_bench_verify");
    const auto tmp = crsm::checkpoint::begin_checkpoint(scratch->path(), 1);
    const auto write = [&](const std::string& name, int64_t bytes) {
      std::ofstream out(std::filesystem::path(tmp) / name, std::ios::binary);
      std::vector<char> chunk(1 << 20);
      for (int64_t done = 0; done < bytes; done += static_cast<int64_t>(chunk.size())) {
        for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>((done + i) * 40503u >> 7);
        out.write(chunk.data(), static_cast<std::streamsize>(std::min<int64_t>(chunk.size(), bytes - done)));
      }
    };
    write("model.safetensors", model_bytes);
    for (int r = 0; r < world; ++r) write(format("rank%05d.safetensors", r), 2 * model_bytes / world);
    checkpoint = crsm::checkpoint::commit_checkpoint(scratch->path(), tmp, {{"step", 1}}, 0);
  }
  checkpoint = crsm::dist::broadcast_string(comm, checkpoint);
  auto alone = [&] {
    if (comm.rank() == 0 && !crsm::checkpoint::verify_checkpoint(checkpoint).empty())
      throw std::runtime_error("the benchmark's checkpoint does not verify");
  };
  auto together = [&] { crsm::checkpoint::resolve_resume_across_ranks(comm, checkpoint, "", nullptr); };
  // Both read from the page cache after the first round: this compares hashing, which is
  // what a resume from a fast parallel file system is bound by.
  const auto s = compare(comm, {alone, together}, opt.quick ? 3.0 : 10.0, 5);
  const double gb = 3.0 * static_cast<double>(model_bytes) / 1e9;
  report.row("verify " + size_label(3 * model_bytes) + " checkpoint",
             {{"bytes", 3 * model_bytes}, {"world_size", world}, {"rank0_alone_s", s[0]},
              {"split_s", s[1]}, {"speedup", s[0] / s[1]}},
             format("rank 0 alone %6.3f s (%5.2f GB/s) | split over %d ranks %6.3f s (%5.2f GB/s) | %.2fx",
                    s[0], gb / s[0], world, s[1], gb / s[1], s[0] / s[1]));
  comm.barrier();  // rank 0 removes the directory when `scratch` goes
}

// ---- command line ---------------------------------------------------------------------

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::prepare_blas_environment(argv);
  const auto& rt = crsm::dist::init_runtime(&argc, &argv);
  using crsm::Constraint;
  using crsm::cli::Option;
  const auto o = crsm::bench::parse_command_line(
      argc, argv, "usage: mpirun -np 2 crsm_bench_dist [--json] [--quick] [--only NAME] [options]",
      {Option("quick", Constraint::boolean(), "shorter rounds and smaller buffers"),
       Option("threads", Constraint::integer(0, 4096), "CPU threads per rank (0: as crsm_train chooses)").with_default("0"),
       Option("config", Constraint::path(), "the model's config (default: the bundled configs/small.json)"),
       Option("only", Constraint::word({"allreduce", "overlap", "throughput", "zero", "checkpoint"}), "run this benchmark alone"),
       Option("zero-stage", Constraint::integer(0, 3), "zero stage of the throughput benchmark").with_default("0")});
  Options opt;
  opt.json = o.is_set("json");
  opt.quick = o.is_set("quick");
  opt.threads = static_cast<int>(o.integer("threads"));
  opt.config = o.has("config") ? o.text("config") : crsm::bench::bundled_config("small.json");
  if (o.has("only")) opt.only = o.text("only");
  opt.zero_stage = static_cast<int>(o.integer("zero-stage"));
  // Default as in crsm_train: this rank's CPUs divided among the local ranks sharing them.
  crsm::dist::configure_threads(opt.threads, rt.ranks_sharing_cpus);
  Report report{opt.json, rt.is_root()};
  try {
    auto comm = crsm::dist::make_communicator(rt, c10::Device(c10::kCPU));
    const auto cfg = crsm::load_run_config(opt.config);
    // The load average says whether something else competed for the cores meanwhile.
    double load = -1;
    getloadavg(&load, 1);
    report.line(format("crsm_bench_dist: %d rank%s (%s), %d thread%s per rank, %s, global batch "
                       "%lld x %lld%s, load average %.2f",
                       comm->world_size(), comm->world_size() == 1 ? "" : "s",
                       comm->backend().c_str(), at::get_num_threads(),
                       at::get_num_threads() == 1 ? "" : "s", opt.config.c_str(),
                       static_cast<long long>(kGlobalBatch), static_cast<long long>(kSeqLen),
                       opt.quick ? ", quick" : "", load));
    const auto wanted = [&](const char* name) { return opt.only.empty() || opt.only == name; };
    if (wanted("allreduce")) bench_allreduce(report, *comm, opt);
    if (wanted("overlap")) bench_overlap(report, *comm, cfg, opt);
    if (wanted("throughput")) bench_throughput(report, *comm, cfg, opt);
    if (wanted("zero")) bench_zero(report, *comm, cfg, opt);
    if (wanted("checkpoint")) {
      bench_sha256(report, *comm, opt);
      bench_verification(report, *comm, opt);
    }
  } catch (const std::exception& e) {
    crsm::dist::fail_job(1, std::string("crsm_bench_dist: ") + e.what());
  }
  return 0;
}
