#include "train/step_timer.h"

#include "dist/device_memory.h"

namespace crsm::train {

namespace {
constexpr const char* kNames[kPhases] = {"forward", "backward", "grad_reduce_wait", "optimizer"};
constexpr const char* kRanges[kPhases] = {"crsm::forward", "crsm::backward", "crsm::grad_reduce_wait",
                                          "crsm::optimizer"};
}  // namespace

const char* phase_name(Phase phase) { return kNames[static_cast<size_t>(phase)]; }

StepTimer::Scope::Scope(StepTimer& timer, Phase phase)
    : timer_(timer), phase_(phase), range_(at::RecordScope::USER_SCOPE) {
  timer_.synchronize();
  if (range_.isActive()) range_.before(kRanges[static_cast<size_t>(phase)]);
  start_ = std::chrono::steady_clock::now();
}

StepTimer::Scope::~Scope() {
  timer_.synchronize();
  timer_.add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
}

PhaseSeconds StepTimer::take() {
  const PhaseSeconds taken = seconds_;
  seconds_ = {};
  return taken;
}

void StepTimer::synchronize() const {
  if (sync_) dist::synchronize(*sync_);
}

}  // namespace crsm::train
