#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace crsm::train {

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / warmup;
  if (step >= total) return floor;
  const double span = std::max<int64_t>(1, total - warmup);
  const double progress = static_cast<double>(step - warmup) / span;
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace crsm::train
