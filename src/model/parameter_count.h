#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/model_config.h"

namespace crsm::model {

// Every parameter of the backbone for `cfg` by name and shape, in the order the model
// registers them, from SPEC §3 alone (no model is built): the memory plan of a
// 1.5-billion-parameter config is computed without allocating it, and a test holds the
// implementation to this list.
std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const ModelConfig& cfg);

// Sum of parameter_shapes: what the README quotes for each config.
int64_t analytic_parameter_count(const ModelConfig& cfg);

// The same sum in floating point, which cannot overflow however large the sizes: for
// plans that must first decide whether a config is absurd.
double approximate_parameter_count(const ModelConfig& cfg);

}  // namespace crsm::model
