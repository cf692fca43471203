#include "cli/outputs.h"

#include <algorithm>
#include <filesystem>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/new_directories.h"
#include "checkpoint/run_dir.h"

namespace crsm::cli {
namespace {

namespace fs = std::filesystem;


fs::path resolved(const std::string& path) {
  std::error_code ec;
  return fs::weakly_canonical(fs::absolute(path), ec);
}

// `path` relative to `dir` after resolving links and "..", or empty when it lies outside.
fs::path below(const std::string& path, const std::string& dir) {
  fs::path d = resolved(dir);
  if (!d.has_filename()) d = d.parent_path();
  const fs::path relative = resolved(path).lexically_relative(d);
  return relative.empty() || *relative.begin() == ".." ? fs::path() : relative;
}

std::string what(Input::Kind kind) {
  switch (kind) {
    case Input::Kind::kCheckpoint: return "the checkpoint ";
    case Input::Kind::kRun: return "the run directory ";
    case Input::Kind::kCollection: return "the transition collection ";
    case Input::Kind::kRollouts: return "the rollout collection ";
  }
  return "";
}

// Where `path` may not go, for an output directory or file: the message, or "".
std::string conflict(const std::string& path, bool directory, const Input& input) {
  const fs::path relative = below(path, input.path);
  if (relative.empty()) return "";
  const std::string inside = "inside " + what(input.kind) + input.path + " this command reads";
  if (input.kind != Input::Kind::kRun || directory) return inside + "; write the output somewhere else";
  const std::string name = relative.filename().string();
  const auto& files = checkpoint::RunDir::own_files();
  const bool own = std::find(files.begin(), files.end(), name) != files.end();
  if (std::distance(relative.begin(), relative.end()) == 1 && relative != "." && !own) return "";
  return inside + ", in place of the run's own files; write it directly in the run directory under another name, "
                  "or somewhere else";
}

// The nearest ancestor of `path` that exists must be a directory.
void check_parents(const std::string& named, const std::string& path) {
  std::error_code ec;
  for (fs::path p = fs::absolute(path).parent_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p, ec)) {
      if (!fs::is_directory(p, ec)) throw UsageError(named + ": " + p.string() + " is a file, not a directory");
      return;
    }
    if (p == p.parent_path()) return;
  }
}

}  // namespace

std::vector<Input> checkpoint_inputs(const std::string& checkpoint, const std::string& spec) {
  std::vector<Input> inputs = {{Input::Kind::kCheckpoint, checkpoint}};
  if (const auto run = checkpoint::RunDir::of_checkpoint(checkpoint)) inputs.push_back({Input::Kind::kRun, run->path()});
  if (!spec.empty() && resolved(spec) != resolved(checkpoint)) inputs.push_back({Input::Kind::kRun, spec});
  return inputs;
}

void check_output_directory(const std::string& flag, const std::string& path, const std::vector<Input>& inputs) {
  const std::string named = flag + " " + path;
  for (const auto& input : inputs)
    if (const std::string why = conflict(path, true, input); !why.empty()) throw UsageError(named + ": " + why);
  std::error_code ec;
  if (fs::exists(path, ec) && !fs::is_directory(path, ec))
    throw UsageError(named + ": is a file (expected a directory)");
  check_parents(named, path);
}

void check_output_file(const std::string& flag, const std::string& path, bool force, const std::vector<Input>& inputs) {
  const std::string named = flag + " " + path;
  for (const auto& input : inputs)
    if (const std::string why = conflict(path, false, input); !why.empty()) throw UsageError(named + ": " + why);
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw UsageError(named + ": is a directory (expected a file name)");
  if (fs::exists(path, ec) && !force) throw UsageError(named + ": already exists; pass --force to replace it");
  check_parents(named, path);
}

std::vector<Option> with_tensorboard_flags(std::vector<Option> table) {
  table.insert(table.end(),
               {Option("tensorboard-dir", Constraint::path(),
                       "directory of the TensorBoard event files, the scalars of metrics.jsonl (default: " +
                           checkpoint::RunDir("RUN").tensorboard() + ", RUN being the run directory)"),
                Option("no-tensorboard", Constraint::boolean(), "write no TensorBoard event files")});
  return table;
}

std::string tensorboard_directory(const ParsedOptions& o, const std::string& run_dir,
                                  const std::vector<Input>& inputs) {
  if (o.is_set("no-tensorboard")) {
    if (o.has("tensorboard-dir"))
      throw UsageError("--tensorboard-dir " + o.text("tensorboard-dir") +
                       " and --no-tensorboard exclude each other: give one");
    return "";
  }
  const std::string dir =
      o.has("tensorboard-dir") ? o.text("tensorboard-dir") : checkpoint::RunDir(run_dir).tensorboard();
  check_output_directory("--tensorboard-dir", dir, inputs);
  return dir;
}

void write_output_file(const std::string& path, const std::function<void()>& write) {
  base::NewDirectories created;
  created.create(base::parent_directory(path));
  write();
  created.keep();
}

}  // namespace crsm::cli
