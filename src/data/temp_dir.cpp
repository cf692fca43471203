#include "data/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "base/atomic_file.h"
#include "data/data_error.h"

namespace crsm::data {

TempDir::TempDir(const std::string& parent, const std::string& stem) {
  const std::string pattern = (std::filesystem::path(parent) / ("." + stem + ".XXXXXX")).string();
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  if (!::mkdtemp(name.data()))
    throw DataError(parent + ": cannot create a temporary directory there (" +
                    std::strerror(errno) + ")");
  path_ = name.data();
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;  // best effort: a destructor must not throw
  std::filesystem::remove_all(path_, ec);
}

void publish_staged(TempDir& staging, const std::string& target, const std::string& what) {
  namespace fs = std::filesystem;
  fs::permissions(staging.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                      fs::perms::others_read | fs::perms::others_exec);
  std::error_code ec;
  fs::rename(staging.path(), target, ec);
  if (ec) throw DataError(what + ": cannot move the result into place (" + ec.message() + ")");
  staging.release();
  base::sync_directory(fs::path(target).parent_path().string());
}

}  // namespace crsm::data
