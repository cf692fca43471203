#pragma once

// ARC-format tasks of known families (`crsm_train prepare-arc`). Each task draws one
// transformation of its family (which colours map where, how far to shift, which axis
// to mirror) and applies it to random grids; its test inputs differ from its train
// inputs, so the task can only be solved by inferring the transformation from the
// demonstrations. Generation is bit-identical on every platform for a seed.

#include <cstdint>
#include <string>
#include <vector>

#include "data/arc_task.h"

namespace crsm::data {

// identity, colour_permutation, translation, reflection, rotation, scaling.
const std::vector<std::string>& arc_family_names();

struct ArcGeneratorOptions {
  std::vector<std::string> families = arc_family_names();
  int64_t min_size = 3, max_size = 5;  // grid sides (scaling: its outputs)
  int64_t train_pairs = 3;             // demonstrations per task
  int64_t test_pairs = 1;
};

// Refuses unknown families and impossible sizes, naming the option.
void check_arc_options(const ArcGeneratorOptions& options);

// `count` tasks, cycling through the families, ids "<prefix>-<family>-<index>".
// `exclude`: grids (grid_text) no task may use as any input: how a training set is kept
// apart from the evaluation tasks' test inputs.
std::vector<ArcTask> generate_arc_tasks(const ArcGeneratorOptions& options, int64_t count, uint64_t seed,
                                        const std::string& prefix, const std::vector<std::string>& exclude = {});

struct PrepareArcResult {
  int64_t eval_tasks = 0, train_tasks = 0;
  std::string eval_dir, train_jsonl, corpus;
};

// Writes <output>/eval/<id>.json (evaluation tasks, seed stream 1 of `seed`),
// <output>/train.jsonl (training tasks, stream 0, none using an evaluation test input
// as an input) and <output>/train.txt (the training tasks serialized: a corpus for
// `prepare`). <output> must not exist or be empty.
PrepareArcResult prepare_arc(const ArcGeneratorOptions& options, int64_t eval_tasks, int64_t train_tasks,
                             uint64_t seed, const std::string& output);

}  // namespace crsm::data
