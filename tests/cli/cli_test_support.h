#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../support/scratch_dir.h"

// Runs the real crsm_train binary, as a user would, and inspects what it leaves behind.
namespace crsm::testing {

namespace fs = std::filesystem;

struct CommandResult {
  int status = -1;  // exit status, or -1 if it did not exit normally
  std::string output;  // stdout and stderr together
};

inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int raw = ::pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

inline std::string crsm_train(const std::string& args) {
  return std::string(CRSM_TRAIN_BIN) + " " + args;
}

inline std::string source_path(const std::string& relative) {
  return std::string(CRSM_SOURCE_DIR) + "/" + relative;
}

using TempDir = ScratchDir;

inline void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes the first `bytes` of Tiny Shakespeare to work/corpus.txt and prepares it with
// the byte tokenizer into work/data: the corpus the end-to-end suites train on.
inline CommandResult prepare_shakespeare_prefix(const TempDir& work, size_t bytes) {
  write_file(work.path() / "corpus.txt", read_file(source_path("data/tinyshakespeare.txt")).substr(0, bytes));
  return run_command(crsm_train("prepare --input " + work.str("corpus.txt") + " --output " + work.str("data")));
}

// The records of a run's metrics.jsonl with the given split.
inline std::vector<nlohmann::json> metrics_of(const fs::path& run_dir, const std::string& split) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["split"] == split) out.push_back(j);
  }
  return out;
}

}  // namespace crsm::testing
