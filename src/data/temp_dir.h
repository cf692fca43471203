#pragma once

#include <string>

namespace crsm::data {

// A fresh, uniquely named directory that is removed with its contents on destruction,
// unless release() hands it over (e.g. after renaming it into place).
class TempDir {
 public:
  // Creates `parent`/.`stem`.XXXXXX; `parent` must exist.
  TempDir(const std::string& parent, const std::string& stem);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Moves a finished staging directory to `target` (absolute, no trailing separator; it
// must not exist or be empty: rename(2) never replaces a directory with contents), makes
// it an ordinary directory (mkdtemp's is private) and syncs the parent. DataError
// naming `what` when it cannot.
void publish_staged(TempDir& staging, const std::string& target, const std::string& what);

}  // namespace crsm::data
