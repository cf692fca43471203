#include "dist/zero_policy.h"

#include <stdexcept>
#include <string>

namespace crsm::dist {

ZeroPolicy ZeroPolicy::for_stage(int stage) {
  using R = Reduction;
  using O = Ownership;
  using P = Placement;
  switch (stage) {
    case 0: return {0, R::kAllReduce, O::kEverything, P::kReplicated};
    case 1: return {1, R::kAllReduce, O::kShard, P::kReplicated};
    case 2: return {2, R::kReduceScatter, O::kShard, P::kReplicated};
    case 3: return {3, R::kReduceScatter, O::kShard, P::kSharded};
    default:
      throw std::invalid_argument("--zero-stage " + std::to_string(stage) + ": expected 0, 1, 2 or 3");
  }
}

double analytic_bytes_per_step(const ZeroPolicy& policy, double flat_bytes, int world, int micro_batches) {
  const double part = static_cast<double>(world - 1) / world * flat_bytes;  // one all-gather or reduce-scatter
  const double reductions = policy.sharded_gradients() ? micro_batches * part : 2 * part;
  const double gathers = policy.sharded_parameters() ? 2.0 * micro_batches * part
                         : policy.gathers_after_update() ? part
                                                         : 0.0;
  return reductions + gathers;
}

}  // namespace crsm::dist
