#pragma once

// Where a training step's time goes on this rank, phase by phase, and the ranges a
// profiler trace (--profile-steps) shows for them. The phases:
//   forward        forward passes of the micro-batches (ZeRO-3's gathers included);
//   backward       their backward passes, with the bucket reductions they launch;
//   grad_reduce_wait  after each backward, waiting for its buckets' reductions to finish;
//   optimizer      gradient norm, clipping, AdamW, and gathering the updated parameters.
// The reduction of the reported losses between the last two belongs to none of them.
//
// On the CPU an operation has finished when it returns, so the host clock times a phase
// exactly and the timer adds no synchronization. On CUDA the clock only says when kernels
// were queued: given a device to synchronize, the timer waits for it at both ends of each
// phase (what ProfileOptions::sync_timers asks for), which costs those waits.

#include <ATen/record_function.h>
#include <c10/core/Device.h>

#include <array>
#include <chrono>
#include <optional>

namespace crsm::train {

enum class Phase { kForward, kBackward, kGradReduceWait, kOptimizer };
inline constexpr size_t kPhases = 4;

// The phase's name in metrics.jsonl's keys ("forward"); its range is "crsm::" + it.
const char* phase_name(Phase phase);

using PhaseSeconds = std::array<double, kPhases>;

class StepTimer {
 public:
  // `sync`: the CUDA device to synchronize at phase boundaries; none on the CPU.
  explicit StepTimer(std::optional<c10::Device> sync = std::nullopt) : sync_(sync) {}

  // Adds its lifetime to a phase, inside a profiler range of the phase's name.
  class Scope {
   public:
    Scope(StepTimer& timer, Phase phase);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    StepTimer& timer_;
    Phase phase_;
    at::RecordFunction range_;
    std::chrono::steady_clock::time_point start_;
  };
  Scope time(Phase phase) { return Scope(*this, phase); }
  // Time measured elsewhere (per-share threads, thread_shares.h).
  void add(Phase phase, double seconds) { seconds_[static_cast<size_t>(phase)] += seconds; }

  // The seconds of each phase since the last take().
  PhaseSeconds take();

 private:
  void synchronize() const;

  std::optional<c10::Device> sync_;
  PhaseSeconds seconds_{};
};

}  // namespace crsm::train
