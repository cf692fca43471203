#pragma once

#include <string>
#include <vector>

namespace crsm::base {

// The directories a command creates for its outputs. If the command fails before
// keep(), the destructor removes those of them that are still empty, deepest first, so
// a refused command leaves no new empty directories behind (and never removes anything
// that was there before or that holds a file).
class NewDirectories {
 public:
  NewDirectories() = default;
  ~NewDirectories();
  NewDirectories(const NewDirectories&) = delete;
  NewDirectories& operator=(const NewDirectories&) = delete;

  // Creates `dir` and any missing ancestors, remembering which it made. FileError naming
  // the directory when one cannot be made (a file in the way, no permission).
  void create(const std::string& dir);
  void keep() { created_.clear(); }

 private:
  std::vector<std::string> created_;  // outermost first
};

}  // namespace crsm::base
