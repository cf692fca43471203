#pragma once

#include <functional>
#include <string>
#include <vector>

namespace crsm::cli {

// A directory a command reads its input from (a checkpoint, a run), named for messages.
struct InputDirectory {
  std::string path;
  std::string what;  // "checkpoint", "run directory"
};

// The rules for a file a command writes (export's safetensors, plot's SVG), checked
// before any work: it may not lie inside a directory the command reads, where it would
// replace the command's own input; an existing file is replaced only when `force` is
// set (and then atomically, by base::AtomicFile); a directory is never replaced.
// UsageError naming `flag` otherwise.
void check_output_file(const std::string& flag, const std::string& path, bool force,
                       const std::vector<InputDirectory>& inputs);

// Runs `write` (which writes `path` through base::AtomicFile) after creating the
// directories `path` needs; if it throws, the new ones that are still empty go again.
void write_output_file(const std::string& path, const std::function<void()>& write);

}  // namespace crsm::cli
