#pragma once

// The HDF5 rollout store (SPEC §9): the model's own sampled answers to training tasks,
// each labelled against the known answer; they train `outcome` values (SPEC §3). A row
// store (data/row_store.h: one file per rank written in SWMR mode, crash-resume, a
// virtual-dataset master). Per row, one sampled answer:
//   /task          [N] bytes (task_width)  the task's id, NUL-padded
//   /test_index    [N] int32   which test output of the task
//   /item          [N] int64   the test output's index in the collection's item order
//   /sample        [N] int32   which of the item's K samples (its seed)
//   /prompt_length [N] int32   tokens of the prompt
//   /prompt        [N, prompt_width] int32   the prompt's tokens, then -1
//   /answer_length [N] int32   tokens of the answer
//   /answer        [N, answer_width] int32   the answer's tokens, then -1
//   /logprob       [N] float64 the answer's log-probability under the model
//   /cells_right   [N] int32   cells of the expected grid the answer has right (0 for text)
//   /cells         [N] int32   cells of the expected grid (0 for text)
//   /label         [N] uint8   1 when the answer is exactly right
// Root attributes: format_version, task_width, prompt_width, answer_width, samples,
// vocab_size, model_sha256 (of the checkpoint's model.safetensors), plan.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/row_store.h"

namespace crsm::data {

inline constexpr int kRolloutFormatVersion = 1;

struct RolloutSchema {
  int64_t task_width = 1, prompt_width = 1, answer_width = 1, samples = 1, vocab_size = 1;
  std::string model_sha256;
  std::string plan;  // the tasks, the sampling and the number of ranks: resume only the same plan
};

// Rows on the CPU, one tensor per dataset above (task: uint8 [n, task_width]).
struct RolloutRows {
  at::Tensor task, test_index, item, sample, prompt_length, prompt, answer_length, answer, logprob, cells_right, cells,
      label;
  int64_t size() const { return label.defined() ? label.size(0) : 0; }
};

// One sampled answer, as a collection produces it.
struct Rollout {
  std::string task;
  int32_t test_index = 0;
  int64_t item = 0;
  int32_t sample = 0;
  std::vector<int32_t> prompt, answer;
  double logprob = 0;
  int32_t cells_right = 0, cells = 0;
  bool label = false;
};

// The rows of `rollouts` under `schema`; std::invalid_argument naming the field that
// does not fit its width.
RolloutRows rollout_rows(const std::vector<Rollout>& rollouts, const RolloutSchema& schema);
// Row r of `rows`, back as a Rollout.
Rollout rollout_at(const RolloutRows& rows, int64_t r);

const RowFormat& rollout_format();

struct RolloutFileInfo {
  RowFileInfo file;
  RolloutSchema schema;
};
// inspect_row_file for rollout files (DataError naming the file and the field).
RolloutFileInfo inspect_rollout_file(const std::string& path);
RowAttributes rollout_attributes(const RolloutSchema& schema);

class RolloutWriter {
 public:
  RolloutWriter(std::string path, const RolloutSchema& schema, WriterOptions options = {});
  int64_t rows() const { return writer_.rows(); }
  void append(const RolloutRows& rows);
  WriterStats close() { return writer_.close(); }

 private:
  RowWriter writer_;
};

class RolloutReader {
 public:
  explicit RolloutReader(const std::string& path);
  const RolloutFileInfo& info() const { return info_; }
  int64_t rows() const { return info_.file.rows; }
  RolloutRows read(int64_t first, int64_t count) const;

 private:
  RowReader reader_;
  RolloutFileInfo info_;
};

}  // namespace crsm::data
