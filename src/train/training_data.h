#pragma once

#include <string>

#include "dist/communicator.h"

namespace crsm::train {

// The prepared directory `crsm_train train --data DATA` trains on. DATA is a prepared
// directory, or a text file that rank 0 prepares once with the byte tokenizer into
// <run_dir>/data and that later runs reuse while that directory still describes the
// same file (path and size). Collective; UsageError or DataError naming --data. ""
// when a preemption signal stopped the preparation (nothing of it is left).
std::string resolve_training_data(const std::string& data, const std::string& run_dir, dist::Communicator& comm);

}  // namespace crsm::train
