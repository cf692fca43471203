#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "base/new_directories.h"

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

// An output directory as an absolute path without a trailing separator (so that its
// parent, where staging goes, and its name are well defined), refused with
// DataError(`refusal`) when it exists and is not an empty directory: commands that write
// a directory never write over one.
std::filesystem::path fresh_output(const std::string& dir, const std::string& refusal);

// A directory output written in a staging directory beside its target (whose missing
// parents are created) and renamed into place by publish(): until then a failure leaves
// nothing behind, not even the new parents.
class StagedOutput {
 public:
  explicit StagedOutput(const std::filesystem::path& target);
  const std::string& path() const { return staging_->path(); }
  // Makes it an ordinary directory (mkdtemp's is private), renames it to the target
  // (which must not exist or be empty: rename(2) never replaces a directory with
  // contents) and syncs the parent. DataError naming `what` when it cannot.
  void publish(const std::string& what);

 private:
  std::filesystem::path target_;
  base::NewDirectories created_;
  std::optional<TempDir> staging_;  // after created_: removed before the new parents
};

}  // namespace crsm::data
