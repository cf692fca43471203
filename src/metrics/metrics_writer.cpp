#include "metrics/metrics_writer.h"

#include "metrics/metrics_log.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/error.h"

namespace crsm::metrics {

MetricsWriter::MetricsWriter(const std::string& run_dir, int64_t keep_through_step,
                             const std::string& tensorboard_dir) {
  namespace fs = std::filesystem;
  const fs::path path = fs::path(run_dir) / kMetricsFile;
  std::string kept;
  if (keep_through_step >= 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_object() && record.value("step", int64_t(0)) <= keep_through_step)
        kept += line + "\n";
    }
  }
  base::write_file_atomically(path.string(), kept);
  out_.open(path, std::ios::app);
  if (!out_) throw FileError(path.string() + ": cannot open for writing");
  if (!tensorboard_dir.empty()) tensorboard_.emplace(tensorboard_dir, std::max<int64_t>(keep_through_step, -1) + 1);
}

void MetricsWriter::write(const nlohmann::json& record) {
  out_ << record.dump() << "\n";
  out_.flush();
  if (tensorboard_) tensorboard_->write(record);
}

}  // namespace crsm::metrics
