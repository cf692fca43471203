#include "cli/profile_flags.h"

#include <cmath>
#include <string>

#include "checkpoint/run_dir.h"

namespace crsm::cli {

namespace {

struct StepRange {
  int64_t first = 0, last = 0;
  std::string problem;  // "" for a good range
};

// "A:B": steps A to B, counted from 1.
StepRange read_step_range(const std::string& text) {
  const auto is_count = [](const std::string& t) {
    return !t.empty() && t.size() <= 15 && t.find_first_not_of("0123456789") == std::string::npos;
  };
  const size_t colon = text.find(':');
  StepRange range;
  if (colon == std::string::npos || !is_count(text.substr(0, colon)) || !is_count(text.substr(colon + 1))) {
    range.problem = "two step numbers joined by ':'";
    return range;
  }
  range.first = std::stoll(text.substr(0, colon));
  range.last = std::stoll(text.substr(colon + 1));
  if (range.first < 1) range.problem = "steps count from 1";
  else if (range.last < range.first) range.problem = "B comes before A";
  return range;
}

}  // namespace

std::vector<Option> with_profile_flags(std::vector<Option> own) {
  own.insert(own.end(), {
      Option("peak-tflops", Constraint::number(0, INFINITY, /*lo_open=*/true),
             "one device's peak TFLOP/s, for the mfu key of metrics.jsonl (default: a known GPU's dense bf16 peak; "
             "no mfu on the CPU)"),
      Option("profile-steps",
             Constraint::explained([](const std::string& t) { return read_step_range(t).problem; },
                                   "A:B, steps A to B of the run (1 <= A <= B)"),
             "a Chrome trace of steps A to B from each rank, by LibTorch's profiler (" +
                 checkpoint::RunDir("RUN").trace(0) + " is rank 0's; opens in Perfetto)"),
      Option("sync-timers", Constraint::boolean(),
             "CUDA: synchronize the device at the ends of each step phase, so metrics.jsonl gets their times "
             "(time/*_ms; the CPU always does)"),
  });
  return own;
}

train::ProfileOptions profile_options(const ParsedOptions& o) {
  train::ProfileOptions p;
  if (o.has("peak-tflops")) p.peak_tflops = o.number("peak-tflops");
  if (o.has("profile-steps")) {
    const StepRange range = read_step_range(o.text("profile-steps"));
    p.trace_first = range.first;
    p.trace_last = range.last;
  }
  p.sync_timers = o.is_set("sync-timers");
  return p;
}

}  // namespace crsm::cli
