#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <thread>
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

// `mpirun` with the flags every multi-rank test needs, for `world` ranks.
inline std::string mpirun(int world) {
  return std::string(CRSM_MPIEXEC) + " --allow-run-as-root --oversubscribe -np " + std::to_string(world) + " ";
}

// A job started in the background in its own process group, as a scheduler would see
// it. A test that fails half-way must not leave it running.
struct Job {
  pid_t pid = -1;
  std::string log;
  Job() = default;
  Job(Job&& other) noexcept : pid(other.pid), log(std::move(other.log)) { other.pid = -1; }
  ~Job() { kill(); }
  // SIGKILL to the whole group (mpirun and its ranks, or a shell's command), if running.
  void kill() {
    if (pid <= 0 || ::waitpid(pid, nullptr, WNOHANG) != 0) return;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

inline Job spawn(const std::string& command, const std::string& log) {
  Job job;
  job.log = log;
  job.pid = ::fork();
  if (job.pid == 0) {
    ::setpgid(0, 0);
    const std::string line = "exec " + command + " > " + log + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return job;
}

// Exit status (128 + signal when killed), or -1 if it is still running after timeout_s.
inline int wait_for(const Job& job, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int raw = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(job.pid, &raw, WNOHANG) == job.pid)
      return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

inline std::string read_file(const std::filesystem::path& path);

// Whether the job has ended (it is not reaped: wait_for still gets its status).
inline bool job_ended(const Job& job) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(job.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == job.pid;
}

// Whether the job's log says `text` within timeout_s (false at once when it ends without).
inline bool wait_for_text(const Job& job, const std::string& text, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    const bool ended = job_ended(job);
    if (read_file(job.log).find(text) != std::string::npos) return true;
    if (ended) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
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
