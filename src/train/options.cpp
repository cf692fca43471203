#include "train/options.h"

#include <algorithm>
#include <limits>
#include <string>

#include "base/error.h"

namespace crsm::train {

Schedule plan_schedule(const LengthOptions& length, int64_t batches_per_epoch, int64_t warmup_cap) {
  if (length.max_steps == 0 && length.epochs > std::numeric_limits<int64_t>::max() / std::max<int64_t>(1, batches_per_epoch))
    throw UsageError("--epochs " + std::to_string(length.epochs) + " of " + std::to_string(batches_per_epoch) +
                     " batches each is more steps than can be counted");
  Schedule s;
  s.total_steps = length.max_steps > 0 ? length.max_steps : length.epochs * batches_per_epoch;
  s.warmup_steps = length.warmup_steps >= 0 ? length.warmup_steps : std::min<int64_t>(warmup_cap, s.total_steps / 20);
  return s;
}

void check_trace_steps(const ProfileOptions& profile, int64_t total_steps) {
  if (profile.trace_last > total_steps)
    throw UsageError("--profile-steps " + std::to_string(profile.trace_first) + ":" +
                     std::to_string(profile.trace_last) + ": the run ends at step " + std::to_string(total_steps));
}

}  // namespace crsm::train
