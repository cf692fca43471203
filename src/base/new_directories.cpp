#include "base/new_directories.h"

#include <filesystem>

#include "base/error.h"

namespace crsm::base {

namespace fs = std::filesystem;

void NewDirectories::create(const std::string& dir) {
  std::vector<fs::path> missing;
  std::error_code ec;
  for (fs::path p = fs::absolute(dir).lexically_normal(); !p.empty() && !fs::exists(p, ec);
       p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (!fs::create_directory(*it, ec) && ec)
      throw FileError(it->string() + ": cannot create the directory (" + ec.message() + ")");
    created_.push_back(it->string());
  }
  if (!fs::is_directory(dir, ec))
    throw FileError(dir + ": exists and is not a directory (expected a directory)");
}

NewDirectories::~NewDirectories() {
  std::error_code ec;
  for (auto it = created_.rbegin(); it != created_.rend(); ++it)
    if (fs::is_directory(*it, ec) && fs::is_empty(*it, ec)) fs::remove(*it, ec);
}

}  // namespace crsm::base
