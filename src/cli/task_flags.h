#pragma once

// What the commands that read tasks share (eval, rollouts): the flags that name the task
// sources and bound each item's prompt and answer, and the items they give.

#include <cstdint>
#include <vector>

#include "cli/options.h"
#include "eval/eval_items.h"

namespace crsm::cli {

// A command's own options followed by --tasks (mandatory, many), --max-tasks,
// --max-prompt-tokens and --max-new-tokens.
std::vector<Option> with_task_flags(std::vector<Option> own);

// Every test output of the --tasks sources (each read only as far as --max-tasks needs),
// in source order. UsageError for a source given twice.
std::vector<eval::EvalItem> read_task_items(const ParsedOptions& o);

// --max-new-tokens, 0 for auto (twice the answer's tokens, plus 8).
int64_t max_new_tokens(const ParsedOptions& o);

}  // namespace crsm::cli
