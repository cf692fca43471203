#pragma once

// What every command of several ranks starts with, made once per process from the same
// flags: the device of this rank, its CPU threads, and the communicator over all ranks.
// A command starts one for itself; the pipeline starts one and runs every stage in it.

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "cli/options.h"
#include "dist/communicator.h"
#include "dist/runtime.h"

namespace crsm::cli {

struct Session {
  const dist::Runtime& runtime;
  torch::Device device;
  std::unique_ptr<dist::Communicator> comm;
};

// A command's option table with the flags start_session reads: --threads and
// --collective-timeout.
std::vector<Option> with_session_flags(std::vector<Option> table);

// `device`: cpu | cuda | cuda:N (cuda: the GPU of the local rank). Says on stderr how
// each rank was set up when there are several.
Session start_session(const std::string& device, const ParsedOptions& o, const std::string& command);

}  // namespace crsm::cli
