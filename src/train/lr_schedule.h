#pragma once

#include <cstdint>

namespace crsm::train {

// Linear warm-up from peak/warmup to peak over `warmup` steps, then cosine decay to
// `floor` at step `total` (and floor after it).
struct LrSchedule {
  double peak;
  double floor;
  int64_t warmup;
  int64_t total;

  double at(int64_t step) const;  // step counts from 0
};

}  // namespace crsm::train
