#pragma once

// Planning tasks (SPEC §5): ARC tasks as the public ARC-AGI repository ships them (a
// directory of <task id>.json files, each {"train":[{"input":grid,"output":grid},...],
// "test":[...]}), the same objects one per line in JSONL, and plain
// {"prompt": str, "answer": str} JSONL. Grids are rectangular lists of ints 0-9, 1x1 to
// 30x30. Every reader refuses anything else with a DataError naming the file, the line
// (JSONL) and the field.
//
// One serialization (docs/arc_format.md) turns a task into text, for training corpora and
// for evaluation prompts alike:
//   a grid is its rows, each row its digits followed by '\n';
//   a pair is "in\n" grid "out\n" grid "\n";
//   a prompt is the demonstrations as pairs, then "in\n" test-grid "out\n";
//   its answer is the test output's grid followed by "\n" (the blank line ends it).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/data_error.h"

namespace crsm::data {

using Grid = std::vector<std::vector<int>>;

struct GridPair {
  Grid input, output;
};

struct ArcTask {
  std::string id;      // the file's stem (directory), "id" or "<file stem>:<line>" (JSONL)
  std::string family;  // "family" when the file names one (prepare-arc does), else "arc"
  std::vector<GridPair> train, test;
};

constexpr int kMaxGridSide = 30;

// Where tasks came from: a file, or a directory of per-task files.
struct TaskSource {
  std::string path;
  std::vector<ArcTask> arc;
  // Plain prompt/answer tasks.
  struct Text {
    std::string id, prompt, answer;
  };
  std::vector<Text> text;
};

// A directory of <id>.json ARC files (sorted by name), or a .json ARC file, or a .jsonl
// file of ARC objects or of prompt/answer objects (the first line decides). With
// max_tasks > 0 only the first max_tasks tasks are read (and checked): the rest of a
// long file is never parsed.
TaskSource read_tasks(const std::string& path, int64_t max_tasks = 0);

// One task object; `where` names it in errors ("FILE" or "FILE line N").
ArcTask parse_arc_task(const std::string& text, const std::string& where, const std::string& id);

std::string grid_text(const Grid& grid);
std::string pair_text(const GridPair& pair);
// The demonstrations and test input `test_index`, ending where the answer begins.
std::string arc_prompt(const ArcTask& task, size_t test_index);
std::string arc_answer(const ArcTask& task, size_t test_index);
// The whole task with every answer: a training document.
std::string arc_training_text(const ArcTask& task);
// The grid a generated answer spells, read as far as it is well formed (rows of digits
// up to the blank line); nullopt when not even one row is.
std::optional<Grid> parse_grid_text(const std::string& text);

// One task as the ARC repository's JSON object (with its "family").
std::string arc_task_json(const ArcTask& task);

}  // namespace crsm::data
