#pragma once

// Where a command may write, one rule for every output of every command, checked before
// any work. A command never writes into what it reads:
//   - nothing inside a checkpoint it reads (its files are verified by their digests) or
//     inside a transition or rollout collection it reads;
//   - no output directory inside a run directory it reads, or as one: a run's
//     checkpoints, metrics and data would mix with that run's own;
//   - an output file in a run directory it reads only directly in it, beside the run's
//     files (a report, a plot) and never in place of one of them.
// And an output is what its flag says: a directory is not an existing file and needs no
// directory where a file is; a file is not an existing directory and replaces an existing
// file only when asked to (--force, and then atomically). UsageError naming the flag.

#include <functional>
#include <string>
#include <vector>

#include "cli/options.h"

namespace crsm::cli {

// Something a command reads, named by its kind in messages.
struct Input {
  enum class Kind { kCheckpoint, kRun, kCollection, kRollouts };  // kCollection: of transitions
  Kind kind;
  std::string path;
};

// A checkpoint a command reads and, when it lies in a run (RUN/checkpoints/step_N), that
// run; `spec`, when given, is the path that named it (a run directory, say), read too.
std::vector<Input> checkpoint_inputs(const std::string& checkpoint, const std::string& spec = "");

void check_output_directory(const std::string& flag, const std::string& path, const std::vector<Input>& inputs);
void check_output_file(const std::string& flag, const std::string& path, bool force, const std::vector<Input>& inputs);

// The flags of the commands that write metrics.jsonl (train, distill): --tensorboard-dir
// DIR and --no-tensorboard.
std::vector<Option> with_tensorboard_flags(std::vector<Option> table);
// Where the run in `run_dir` writes its TensorBoard event files: --tensorboard-dir, by
// default RunDir::tensorboard(), "" with --no-tensorboard; checked as an output directory
// against `inputs`. UsageError when both flags are given.
std::string tensorboard_directory(const ParsedOptions& o, const std::string& run_dir,
                                  const std::vector<Input>& inputs);

// Runs `write` (which writes `path` through base::AtomicFile) after creating the
// directories `path` needs; if it throws, the new ones that are still empty go again.
void write_output_file(const std::string& path, const std::function<void()>& write);

}  // namespace crsm::cli
