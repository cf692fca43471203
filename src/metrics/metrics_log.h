#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crsm::metrics {

// The file a run directory keeps its metrics in.
inline constexpr const char* kMetricsFile = "metrics.jsonl";

struct LossPoint {
  int64_t step;
  double loss;
};

// One training run's loss curves, in file order (MetricsWriter keeps steps increasing).
struct RunMetrics {
  std::string name;  // the run directory's last path component
  std::vector<LossPoint> train, val;
};

// Reads run_dir/metrics.jsonl: one JSON object per line with an integer "step", "split"
// ("train" or "val") and a numeric "loss"; other keys are ignored, and so is a record whose
// loss is null (a NaN written by nlohmann::json). An unparsable last line is skipped (a
// killed run leaves it half written).
// Throws FileError naming the file if it is missing or holds no loss record,
// and naming the file and line number for a malformed line.
RunMetrics read_metrics(const std::string& run_dir);

}  // namespace crsm::metrics
