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

}  // namespace crsm::data
