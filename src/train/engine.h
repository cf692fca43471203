#pragma once

// The training engine (SPEC §6): what one optimizer step does, in one place for every
// stage and for the benchmark. It wires data parallelism around an objective's
// trainable parameters (gradient buckets under the ZeRO policy, stage 3's unit hooks
// into the model), keeps AdamW over the pieces this rank owns, chooses how the rank's
// threads share a micro-batch (thread_shares.h), and takes a step:
//   for each of grad_accum micro-batches: forward and backward of Objective::losses()[0];
//   one reduction of the reported losses and of whether any rank was signalled;
//   clipping of the global gradient norm, the update, the gather of updated parameters.
// Each step reports the time of its phases on this rank (step_timer.h).
// The loop around it (training_loop.h) resumes, reports, validates, saves and stops.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/training_checkpoint.h"
#include "dist/communicator.h"
#include "dist/counting_communicator.h"
#include "dist/data_parallel.h"
#include "train/adamw.h"
#include "train/objective.h"
#include "train/options.h"
#include "train/step_timer.h"
#include "train/thread_shares.h"
#include "train/unit_gathering.h"

namespace crsm::train {

class Engine {
 public:
  // What one step did: the reported losses averaged over micro-batches and ranks, the
  // gradient norm before clipping, whether a rank was signalled to stop, and this rank's
  // seconds in each phase.
  struct StepResult {
    std::vector<double> losses;
    double grad_norm = 0;
    bool preempted = false;
    PhaseSeconds phases{};
    bool finite() const;  // the headline loss and the gradient norm
  };

  // `rows`: this rank's rows of each batch (the source's). `sync_timers`: on CUDA, time
  // each phase by synchronizing the device at its ends (step_timer.h). Collective.
  Engine(Objective& objective, const ParallelOptions& parallel, const OptimizerOptions& optimizer, int64_t rows,
         dist::Communicator& comm, bool sync_timers = false);
  ~Engine();  // the model's unit hooks are removed before the shards they gather go
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // One optimizer step on a batch of this rank's rows, at learning rate `lr`. Collective.
  // A non-finite step leaves the parameters as they were.
  StepResult step(const Batch& batch, double lr);

  AdamW& optimizer() { return optimizer_; }
  const dist::DataParallel& data_parallel() const { return dp_; }
  dist::DataParallel& data_parallel() { return dp_; }
  const checkpoint::ShardingInfo& sharding() const { return sharding_; }
  // The run log's line on how the threads share the work (empty with one thread).
  std::string describe_threads() const { return describe_thread_use(thread_inputs_); }
  ThreadUse thread_use() const { return thread_use_; }
  // The parameters that train (N of MFU's 6N FLOPs per token).
  int64_t trainable_parameters() const { return dp_.layout().data_elements(); }
  const c10::Device& device() const { return device_; }

  // Bytes this rank asked to send for parameters and gradients since the last reset,
  // against the analytic volume of one step.
  void reset_traffic() { counted_.reset(); }
  double bytes_sent() const { return counted_.bytes_sent(); }
  double analytic_bytes_per_step() const;
  // Each rank's parameter, gradient and optimizer bytes and its device's peak, [world, 4].
  // Collective.
  at::Tensor memory_per_rank();

 private:
  Objective& objective_;
  ParallelOptions parallel_;
  OptimizerOptions optimizer_options_;
  dist::Communicator& comm_;
  dist::CountingCommunicator counted_;
  const TrainableParameters trainable_;
  dist::DataParallel dp_;
  std::optional<UnitGathering> gathering_;
  ThreadUseInputs thread_inputs_;
  ThreadUse thread_use_;
  std::vector<at::Tensor> params_;
  AdamW optimizer_;
  checkpoint::ShardingInfo sharding_;
  c10::Device device_;
  StepTimer timer_;
};

}  // namespace crsm::train
