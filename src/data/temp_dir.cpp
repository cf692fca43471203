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

std::filesystem::path fresh_output(const std::string& dir, const std::string& refusal) {
  namespace fs = std::filesystem;
  fs::path p = fs::absolute(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  std::error_code ec;
  if (fs::exists(p, ec) && !(fs::is_directory(p, ec) && fs::is_empty(p, ec))) throw DataError(refusal);
  return p;
}

StagedOutput::StagedOutput(const std::filesystem::path& target) : target_(target) {
  created_.create(target_.parent_path().string());
  staging_.emplace(target_.parent_path().string(), target_.filename().string() + ".tmp");
}

void StagedOutput::publish(const std::string& what) {
  namespace fs = std::filesystem;
  fs::permissions(staging_->path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                        fs::perms::others_read | fs::perms::others_exec);
  std::error_code ec;
  fs::rename(staging_->path(), target_, ec);
  if (ec) throw DataError(what + ": cannot move the result into place (" + ec.message() + ")");
  staging_->release();
  base::sync_directory(target_.parent_path().string());
  created_.keep();
}

}  // namespace crsm::data
