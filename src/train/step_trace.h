#pragma once

// --profile-steps A:B (ProfileOptions): LibTorch's profiler records what this rank does
// in steps A to B (each step with its report, validation and checkpoint), and the trace
// is written when step B ends, or when the run stops earlier, as a Chrome trace
// (RunDir::trace) that Perfetto and chrome://tracing open: one process per rank
// ("rank r"), the ranges of LibTorch's operators and ours (step_timer.h's phases,
// crsm::bucket_reduce and crsm::bucket_wait, crsm::zero3_gather and
// crsm::zero3_gather_wait, crsm::checkpoint_save).
//
// The profiler is LibTorch's legacy one: the Debian build has no Kineto to save a trace.
// It records the thread that starts it and the threads LibTorch hands work to through
// at::launch (the autograd engine's among them), not the OpenMP threads of per-share
// forward passes (thread_shares.h).

#include <cstdint>
#include <memory>
#include <sstream>
#include <string>

#include "train/options.h"

namespace torch::autograd::profiler {
struct RecordProfile;
}

namespace crsm::train {

class StepTrace {
 public:
  StepTrace(const ProfileOptions& options, std::string path, int rank);
  ~StepTrace();  // a trace still recording (the run failed) is dropped
  StepTrace(const StepTrace&) = delete;
  StepTrace& operator=(const StepTrace&) = delete;

  // The loop is about to take step `step` (counted from 1).
  void before(int64_t step);
  // The loop is done with step `step`; `stopping`: it takes no more.
  void after(int64_t step, bool stopping);

 private:
  int64_t first_, last_;
  std::string path_;
  int rank_;
  std::ostringstream events_;  // what the profiler writes when it stops
  std::unique_ptr<torch::autograd::profiler::RecordProfile> recording_;
};

}  // namespace crsm::train
