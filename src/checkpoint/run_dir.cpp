#include "checkpoint/run_dir.h"

#include <cstdio>
#include <filesystem>

#include "checkpoint/store.h"

namespace crsm::checkpoint {

namespace fs = std::filesystem;

std::optional<RunDir> RunDir::of_checkpoint(const std::string& checkpoint) {
  const fs::path parent = fs::path(checkpoint).lexically_normal().parent_path();
  if (parent.filename() != kCheckpoints) return std::nullopt;
  return RunDir(parent.parent_path().string());
}

bool RunDir::holds_checkpoints() const { return checkpoint::holds_checkpoints(checkpoints()); }

const std::vector<std::string>& RunDir::own_files() {
  static const std::vector<std::string> files = {metrics::kMetricsFile, kConfig, kRunInfo, kPipelineRecord, kDynamicsFileName, kDynamicsReport};
  return files;
}

std::string RunDir::trace(int rank) const {
  char name[32];
  std::snprintf(name, sizeof name, "rank%05d.json", rank);
  return (fs::path(child(kTraces)) / name).string();
}

std::string RunDir::child(const char* name) const { return (fs::path(path_) / name).string(); }

}  // namespace crsm::checkpoint
