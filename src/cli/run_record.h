#pragma once

// What a run keeps of every start (RUN/run_info.jsonl, one line each): the process's
// command line, the command's own arguments (a pipeline stage's equivalent line), every
// option with its value as the command resolved it (flag-only options included: weight
// decay, warm-up, clipping, accumulation, precision, bucket size, ...), the config, the
// versions of the code and its libraries, the world size and every rank's host, and the
// time. A result can be traced back to what made it.

#include <string>

#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "cli/session.h"
#include "config/run_config.h"

namespace crsm::cli {

// main() keeps the process's command line for the records.
void remember_command_line(int argc, char** argv);

// Collective: every rank of the session calls it (the hosts are gathered).
nlohmann::json run_record(const std::string& command, const ParsedOptions& o, const RunConfig& config,
                          const Session& session);

}  // namespace crsm::cli
