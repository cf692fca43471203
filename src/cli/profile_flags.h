#pragma once

// What the commands that run the training loop (train, distill) share to say what a step
// costs (train/step_cost.h, train/step_trace.h): --peak-tflops, --profile-steps A:B and
// --sync-timers.

#include <vector>

#include "cli/options.h"
#include "train/options.h"

namespace crsm::cli {

// A command's own options followed by the three flags.
std::vector<Option> with_profile_flags(std::vector<Option> own);

train::ProfileOptions profile_options(const ParsedOptions& o);

}  // namespace crsm::cli
