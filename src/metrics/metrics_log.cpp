#include "metrics/metrics_log.h"

#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file_read.h"

namespace crsm::metrics {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string run_name(const std::string& run_dir) {
  // Absolute first so that "." and "runs/a/" name the directory rather than "." or "".
  fs::path p = fs::absolute(run_dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

bool is_blank(const std::string& s) {
  return s.find_first_not_of(" \t\r") == std::string::npos;
}

void add_record(const json& j, const std::string& where, RunMetrics& m) {
  if (!j.is_object()) throw FileError(where + ": expected a JSON object");
  const auto step = j.find("step");
  if (step == j.end() || !step->is_number_integer())
    throw FileError(where + ": expected an integer \"step\"");
  const auto split = j.find("split");
  if (split == j.end() || !split->is_string() || (*split != "train" && *split != "val"))
    throw FileError(where + ": expected \"split\" to be \"train\" or \"val\"");
  const auto loss = j.find("loss");
  // nlohmann::json writes a NaN loss as null: the run diverged there, and the curve up to
  // that point is what the plot is for.
  if (loss != j.end() && loss->is_null()) return;
  if (loss == j.end() || !loss->is_number() || !std::isfinite(loss->get<double>()))
    throw FileError(where + ": expected a finite number \"loss\"");
  (*split == "train" ? m.train : m.val).push_back({step->get<int64_t>(), loss->get<double>()});
}

}  // namespace

RunMetrics read_metrics(const std::string& run_dir) {
  const std::string path = (fs::path(run_dir) / kMetricsFile).string();
  std::istringstream in(base::read_file(path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  size_t last = lines.size();
  while (last > 0 && is_blank(lines[last - 1])) --last;

  RunMetrics m;
  m.name = run_name(run_dir);
  for (size_t i = 0; i < last; ++i) {
    if (is_blank(lines[i])) continue;
    const std::string where = path + ":" + std::to_string(i + 1);
    json j;
    try {
      j = json::parse(lines[i]);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e999
      if (i + 1 == last) break;  // a killed run leaves its last line half written
      throw FileError(where + ": malformed JSON: " + e.what());
    }
    add_record(j, where, m);
  }
  if (m.train.empty() && m.val.empty()) throw FileError(path + ": no loss records");
  return m;
}

}  // namespace crsm::metrics
