#pragma once

#include <cstdint>

#include "model/model_config.h"

namespace crsm::model {

// Number of parameters of the backbone for `cfg`, from the shapes of SPEC §3 alone
// (no model is built), so a test can hold the implementation to it and the README can
// quote the large config without allocating it.
int64_t analytic_parameter_count(const ModelConfig& cfg);

}  // namespace crsm::model
