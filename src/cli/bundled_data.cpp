#include "cli/bundled_data.h"

#include <filesystem>
#include <vector>

#include "base/error.h"

namespace crsm::cli {

std::string bundled_file(const std::string& relative, const std::string& flag) {
  namespace fs = std::filesystem;
  std::vector<fs::path> places;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (const fs::path& prefix : {exe.parent_path().parent_path(), exe.parent_path().parent_path().parent_path()})
      places.push_back(prefix / "share" / "crsm" / relative);
  places.push_back(fs::path(CRSM_SOURCE_DIR) / relative);
  std::string tried;
  for (const auto& place : places) {
    if (fs::exists(place, ec)) return place.string();
    tried += (tried.empty() ? "" : ", ") + place.string();
  }
  throw UsageError("the bundled " + relative + " was not found (looked in " + tried + "): give " + flag);
}

std::string bundled_data(const std::string& relative, const std::string& flag) {
  return bundled_file("data/" + relative, flag);
}

}  // namespace crsm::cli
