#include "cli/bundled_data.h"

#include <filesystem>
#include <vector>

#include "base/error.h"

namespace crsm::cli {

std::string bundled_data(const std::string& relative, const std::string& flag) {
  namespace fs = std::filesystem;
  std::vector<fs::path> places;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) places.push_back(exe.parent_path().parent_path() / "share" / "crsm" / "data" / relative);
  places.push_back(fs::path(CRSM_SOURCE_DIR) / "data" / relative);
  std::string tried;
  for (const auto& place : places) {
    if (fs::exists(place, ec)) return place.string();
    tried += (tried.empty() ? "" : ", ") + place.string();
  }
  throw UsageError("the bundled data/" + relative + " was not found (looked in " + tried + "): give " + flag);
}

}  // namespace crsm::cli
