#include "train/step_trace.h"

#include <torch/csrc/autograd/profiler_legacy.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"

namespace crsm::train {

namespace {

// The profiler's events (a JSON array, every event in one process named "CPU Functions")
// as a trace of this rank: process `rank`, named so that the ranks' traces loaded
// together stay apart.
std::string rank_trace(const std::string& events, int rank) {
  auto list = nlohmann::json::parse(events);
  for (auto& event : list) event["pid"] = rank;
  nlohmann::json process = {{"name", "process_name"}, {"ph", "M"}, {"pid", rank},
                            {"args", {{"name", "rank " + std::to_string(rank)}}}};
  list.insert(list.begin(), process);
  return nlohmann::json{{"traceEvents", list}, {"displayTimeUnit", "ms"}}.dump() + "\n";
}

}  // namespace

StepTrace::StepTrace(const ProfileOptions& options, std::string path, int rank)
    : first_(options.trace_first), last_(options.trace_last), path_(std::move(path)), rank_(rank) {}

StepTrace::~StepTrace() = default;

void StepTrace::before(int64_t step) {
  if (recording_ || step < first_ || step > last_) return;  // no trace: last_ is 0
  recording_ = std::make_unique<torch::autograd::profiler::RecordProfile>(events_);
}

void StepTrace::after(int64_t step, bool stopping) {
  if (!recording_ || (step < last_ && !stopping)) return;
  recording_.reset();  // stops the profiler, which writes its events
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
  base::write_file_atomically(path_, rank_trace(events_.str(), rank_));
}

}  // namespace crsm::train
