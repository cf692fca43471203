#pragma once

// What trains in a stage, and the optimizer slots a rank owns: shared by the trainer,
// the memory table and the distributed benchmark, so that all three count the same
// parameters.

#include <string>
#include <utility>
#include <vector>

#include "dist/data_parallel.h"
#include "model/backbone.h"
#include "train/adamw.h"

namespace crsm::train {

// Value heads only train in stage 4 (fine-tuning); in stage 1 they are frozen, so no
// gradient, bucket or optimizer state is spent on them.
bool is_value_head(const std::string& name);

struct TrainableParameters {
  std::vector<std::pair<std::string, at::Tensor>> params;
  std::vector<bool> decay;  // per parameter: decays(name, dim)
  std::vector<int> units;   // per parameter: the model's gathering unit (ZeRO-3)
};

// The model's parameters that train, in registration order; the value heads only when
// `value_heads`, and otherwise they are set to require no gradient.
TrainableParameters trainable_parameters(model::Backbone& model, bool value_heads);
// The value heads alone; every other parameter is set to require no gradient.
TrainableParameters value_head_parameters(model::Backbone& model);

// One AdamW slot per piece of parameter this rank owns under `dp`.
std::vector<AdamW::Slot> optimizer_slots(const dist::DataParallel& dp);

}  // namespace crsm::train
