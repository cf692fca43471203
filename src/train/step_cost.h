#pragma once

// What the steps of a logging window cost: the keys the window adds to its metrics.jsonl
// record (and so to TensorBoard). Per step, averaged over the window's steps that this
// process took, each as its maximum (_max) and minimum (_min) over ranks, as Megatron's
// timers report them:
//   time/forward_ms, time/backward_ms, time/grad_reduce_wait_ms, time/optimizer_ms
//       the phases of step_timer.h; on CUDA only with ProfileOptions::sync_timers, since
//       without it the host clock says when kernels were queued, not when they ran;
//   time/step_ms
//       the loop's whole step, taking the batch included (the phases' sum is less by the
//       batch and the reduction of the reported losses);
//   memory/peak_rss_mib (CPU: the process's peak resident memory, getrusage's ru_maxrss)
//   or memory/peak_cuda_mib (CUDA: LibTorch's caching allocator's peak), since the process
//       began.
// And mfu, model FLOPs utilization, where the device's peak is known: 6N FLOPs per item
// (a token; a transition for distill), N the trainable parameters (2N forward, 4N
// backward: the usual rule, which leaves out the selective scan's own arithmetic), times
// the items per second, over the ranks' summed peak. The ranks' max and min travel in one
// small all-reduce per window.

#include <cstdint>
#include <string>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "train/options.h"
#include "train/step_timer.h"

namespace crsm::train {

// A GPU's dense bf16 peak in TFLOP/s by its CUDA name ("NVIDIA A100-SXM4-80GB": 312), from
// a small table of known GPUs; 0 for any other.
double known_peak_tflops(const std::string& device_name);

class StepCost {
 public:
  StepCost(const ProfileOptions& options, const c10::Device& device, int64_t trainable_parameters);

  // The peak MFU is measured against, per device (0: unknown, no mfu key), and where it
  // comes from ("--peak-tflops", or the GPU's name).
  double peak_tflops() const { return peak_tflops_; }
  const std::string& peak_source() const { return peak_source_; }

  void add(const PhaseSeconds& phases, double step_seconds);
  // The window's keys, given its items (tokens, transitions) per second over all ranks;
  // the next window starts empty. Collective.
  nlohmann::json window(dist::Communicator& comm, double items_per_second);

 private:
  c10::Device device_;
  bool phases_timed_;
  double flops_per_item_;
  double peak_tflops_ = 0;
  std::string peak_source_;
  PhaseSeconds phase_sums_{};
  double step_sum_ = 0;
  int64_t steps_ = 0;
};

}  // namespace crsm::train
