#include "train/engine.h"

#include <torch/torch.h>

#include <cmath>

#include "dist/device_memory.h"
#include "dist/runtime.h"

namespace crsm::train {
namespace {

dist::DataParallelOptions data_parallel_options(const ParallelOptions& p) {
  dist::DataParallelOptions o;
  o.zero = p.zero;
  o.bucket_bytes = p.bucket_bytes;
  o.prefetch = p.prefetch;
  return o;
}

}  // namespace

bool Engine::StepResult::finite() const { return std::isfinite(losses.at(0)) && std::isfinite(grad_norm); }

Engine::Engine(Objective& objective, const ParallelOptions& parallel, const OptimizerOptions& optimizer, int64_t rows,
               dist::Communicator& comm, bool sync_timers)
    : objective_(objective),
      parallel_(parallel),
      optimizer_options_(optimizer),
      comm_(comm),
      counted_(comm),
      trainable_(objective.trainable()),
      // The parameters' and gradients' traffic is counted, to be set against the analytic volume.
      dp_(trainable_.params, trainable_.decay, counted_, data_parallel_options(parallel), trainable_.units),
      optimizer_(optimizer_slots(dp_), {0.9, 0.95, 1e-8, optimizer.weight_decay}),
      sharding_(checkpoint::sharding_of(dp_.layout(), parallel.zero)),
      device_(objective.module().parameters().front().device()),
      timer_(sync_timers && device_.is_cuda() ? std::optional<c10::Device>(device_) : std::nullopt) {
  if (dp_.sharded_parameters()) gathering_.emplace(*dp_.sharded_parameters());
  objective_.set_unit_hooks(gathering_ ? &*gathering_ : nullptr);
  thread_inputs_ = {parallel.batch_split, device_.is_cpu(),
                    at::get_num_threads(), rows / parallel.grad_accum, gathering_.has_value(),
                    objective.draws_random_numbers()};
  thread_use_ = choose_thread_use(thread_inputs_);
  for (const auto& named : trainable_.params) params_.push_back(named.second);
}

Engine::~Engine() { objective_.set_unit_hooks(nullptr); }

Engine::StepResult Engine::step(const Batch& batch, double lr) {
  const int64_t accum = parallel_.grad_accum;
  const int64_t micro = batch.at(0).size(0) / accum;
  dp_.zero_grad();
  at::Tensor shared;  // the reported losses, then the preemption flag
  for (int64_t k = 0; k < accum; ++k) {
    dp_.begin_micro_batch(k + 1 == accum);
    Batch part;
    for (const auto& t : batch) part.push_back(t.narrow(0, k * micro, micro));
    std::vector<at::Tensor> reported = forward_backward(
        thread_use_, [&](const Batch& rows) { return objective_.losses(rows); }, part, params_,
        1.0 / static_cast<double>(accum), parallel_.precision, &timer_);
    {
      const auto wait = timer_.time(Phase::kGradReduceWait);
      dp_.end_micro_batch();
    }
    for (auto& r : reported) r = r.to(torch::kDouble);
    reported.push_back(torch::zeros({}, reported[0].options()));
    const auto stacked = torch::stack(reported) / static_cast<double>(accum);
    shared = shared.defined() ? shared + stacked : stacked;
  }
  // One reduction, read once (on a GPU every read is a sync).
  const int64_t n = shared.size(0) - 1;
  if (dist::preemption_signalled()) shared[n] = 1.0;
  dist::all_reduce_now(comm_, shared);
  shared = shared.cpu();
  StepResult result;
  for (int64_t i = 0; i < n; ++i) result.losses.push_back(shared[i].item<double>() / comm_.world_size());
  result.preempted = shared[n].item<double>() > 0;
  {
    const auto update = timer_.time(Phase::kOptimizer);
    result.grad_norm = dp_.grad_norm();
    if (result.finite()) {
      const double clip = optimizer_options_.grad_clip;
      if (clip > 0 && result.grad_norm > clip) dp_.scale_grads(clip / (result.grad_norm + 1e-6));
      optimizer_.step(lr, dp_.owned_grads());
      dp_.gather_params();
    }
  }
  result.phases = timer_.take();
  return result;
}

double Engine::analytic_bytes_per_step() const {
  return dp_.analytic_bytes_per_step(static_cast<int>(parallel_.grad_accum));
}

at::Tensor Engine::memory_per_rank() {
  const int world = comm_.world_size(), rank = comm_.rank();
  const auto m = dp_.memory();
  auto all = torch::zeros({4 * world}, torch::kLong);
  all[4 * rank] = m.params;
  all[4 * rank + 1] = m.grads;
  all[4 * rank + 2] = optimizer_.state_bytes();
  all[4 * rank + 3] = dist::device_peak_bytes(device_);
  all = all.to(comm_.device());
  comm_.all_gather(all)->wait();
  return all.cpu().reshape({world, 4});
}

}  // namespace crsm::train
