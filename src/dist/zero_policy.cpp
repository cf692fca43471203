#include "dist/zero_policy.h"

#include <stdexcept>
#include <string>

namespace crsm::dist {

ZeroPolicy ZeroPolicy::for_stage(int stage) {
  using R = Reduction;
  using O = Ownership;
  switch (stage) {
    case 0: return {R::kAllReduce, O::kEverything};
    case 1: return {R::kAllReduce, O::kShard};
    case 2: return {R::kReduceScatter, O::kShard};
    default:
      throw std::invalid_argument("--zero-stage " + std::to_string(stage) + ": expected 0, 1 or 2");
  }
}

}  // namespace crsm::dist
