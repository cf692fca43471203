#pragma once

#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace crsm::metrics {

// Appends one JSON object per line to <run_dir>/metrics.jsonl, flushed at once so a
// killed run keeps every record it printed. A resumed run first drops the records past
// the step it resumes from, so the file tells one consistent history.
class MetricsWriter {
 public:
  // keep_through_step < 0: a fresh run (any old file is replaced).
  MetricsWriter(const std::string& run_dir, int64_t keep_through_step);
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
};

}  // namespace crsm::metrics
