#include "cli/output_file.h"

#include <filesystem>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/new_directories.h"

namespace crsm::cli {
namespace {

namespace fs = std::filesystem;

// Whether `path` is `dir` or lies below it, after resolving links and "..".
bool is_inside(const std::string& path, const std::string& dir) {
  std::error_code ec;
  const fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
  fs::path d = fs::weakly_canonical(fs::absolute(dir), ec);
  if (!d.has_filename()) d = d.parent_path();
  const fs::path relative = p.lexically_relative(d);
  return !relative.empty() && *relative.begin() != "..";
}

}  // namespace

void check_output_file(const std::string& flag, const std::string& path, bool force,
                       const std::vector<InputDirectory>& inputs) {
  const std::string named = flag + " " + path;
  for (const auto& input : inputs)
    if (is_inside(path, input.path))
      throw UsageError(named + ": inside the " + input.what + " " + input.path +
                       " this command reads; write the output somewhere else");
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw UsageError(named + ": is a directory (expected a file name)");
  if (fs::exists(path, ec) && !force)
    throw UsageError(named + ": already exists; pass --force to replace it");
}

void write_output_file(const std::string& path, const std::function<void()>& write) {
  base::NewDirectories created;
  created.create(base::parent_directory(path));
  write();
  created.keep();
}

}  // namespace crsm::cli
