#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "metrics/tensorboard_writer.h"

namespace crsm::metrics {

// Appends one JSON object per line to <run_dir>/metrics.jsonl, flushed at once so a
// killed run keeps every record it printed. A resumed run first drops the records past
// the step it resumes from, so the file tells one consistent history. The same records
// go to a new TensorBoard event file of each start (tensorboard_writer.h), whose steps
// past keep_through_step replace those of the directory's earlier files.
class MetricsWriter {
 public:
  // keep_through_step < 0: a fresh run (any old file is replaced). tensorboard_dir "":
  // no event files.
  MetricsWriter(const std::string& run_dir, int64_t keep_through_step, const std::string& tensorboard_dir);
  // `record` has an integer "step" and a "split" ("train", "val").
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
  std::optional<TensorBoardWriter> tensorboard_;
};

}  // namespace crsm::metrics
