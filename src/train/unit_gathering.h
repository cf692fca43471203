#pragma once

// ZeRO-3 in a training step: a model's unit hooks (model/unit_hooks.h) answered by the
// parameters' shards (dist/sharded_parameters.h). The first unit of a use is the one
// that runs, so it alone prefetches its neighbour; the others are borrowed.

#include "dist/sharded_parameters.h"
#include "model/unit_hooks.h"

namespace crsm::train {

class UnitGathering final : public model::UnitHooks {
 public:
  explicit UnitGathering(dist::ShardedParameters& params) : params_(params) {}

  void enter_forward(const std::vector<int>& units) override {
    params_.enter_forward(units.at(0));
    for (size_t i = 1; i < units.size(); ++i) params_.gather(units[i]);
  }
  void leave_forward(const std::vector<int>& units) override {
    for (int u : units) params_.leave_forward(u);
  }
  void enter_backward(const std::vector<int>& units) override {
    params_.enter_backward(units.at(0));
    for (size_t i = 1; i < units.size(); ++i) params_.gather(units[i]);
  }

 private:
  dist::ShardedParameters& params_;
};

}  // namespace crsm::train
