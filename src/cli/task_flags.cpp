#include "cli/task_flags.h"

#include <filesystem>

#include "base/error.h"
#include "data/arc_task.h"

namespace crsm::cli {

namespace fs = std::filesystem;

std::vector<Option> with_task_flags(std::vector<Option> own) {
  own.insert(own.end(), {
      Option("tasks", Constraint::path(), "ARC task directories, .json tasks, or .jsonl files of ARC or prompt/answer tasks").mandatory().many(),
      Option("max-tasks", Constraint::integer(0, int64_t{1} << 30), "only the first N tasks of every source (0: all)").with_default("0"),
      Option("max-prompt-tokens", Constraint::integer(1, int64_t{1} << 24), "longer prompts are skipped and counted as skipped").with_default("4096"),
      Option("max-new-tokens", Constraint::integer(1, int64_t{1} << 24).or_word("auto"), "answer tokens at most (auto: twice the answer's, plus 8)").with_default("auto"),
  });
  return own;
}

std::vector<eval::EvalItem> read_task_items(const ParsedOptions& o) {
  std::vector<data::TaskSource> sources;
  const int64_t cap = o.integer("max-tasks");
  const auto paths = o.texts("tasks");
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string& path = paths[i];
    // A task is named by its file and id: a source twice would count its tasks once.
    for (size_t j = 0; j < i; ++j)
      if (fs::weakly_canonical(paths[j]) == fs::weakly_canonical(path))
        throw UsageError("--tasks " + path + ": given twice (also as " + paths[j] + ")");
    sources.push_back(data::read_tasks(path, cap));
  }
  return eval::eval_items(sources);
}

int64_t max_new_tokens(const ParsedOptions& o) {
  return o.value("max-new-tokens").is_string() ? 0 : o.integer("max-new-tokens");
}

}  // namespace crsm::cli
