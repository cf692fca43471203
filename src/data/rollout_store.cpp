#include "data/rollout_store.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "data/data_error.h"

namespace crsm::data {
namespace {

// The columns in the order a block is written (/label last: it commits the block).
struct RolloutColumn {
  const char* name;
  at::Tensor RolloutRows::*rows;
  StoredType stored;
  const char* width;  // the attribute giving its second dimension, or null
};
const RolloutColumn kColumns[] = {
    {"task", &RolloutRows::task, StoredType::kString, "task_width"},
    {"test_index", &RolloutRows::test_index, StoredType::kInt32, nullptr},
    {"item", &RolloutRows::item, StoredType::kInt64, nullptr},
    {"sample", &RolloutRows::sample, StoredType::kInt32, nullptr},
    {"prompt_length", &RolloutRows::prompt_length, StoredType::kInt32, nullptr},
    {"prompt", &RolloutRows::prompt, StoredType::kInt32, "prompt_width"},
    {"answer_length", &RolloutRows::answer_length, StoredType::kInt32, nullptr},
    {"answer", &RolloutRows::answer, StoredType::kInt32, "answer_width"},
    {"logprob", &RolloutRows::logprob, StoredType::kFloat64, nullptr},
    {"cells_right", &RolloutRows::cells_right, StoredType::kInt32, nullptr},
    {"cells", &RolloutRows::cells, StoredType::kInt32, nullptr},
    {"label", &RolloutRows::label, StoredType::kUInt8, nullptr},
};

constexpr int64_t kMaxWidth = int64_t{1} << 24;

std::vector<RowColumn> rollout_columns(const RowAttributes& a) {
  for (const char* key : {"task_width", "prompt_width", "answer_width", "samples", "vocab_size"}) {
    const int64_t v = a.integers.at(key);
    if (v < 1 || v > kMaxWidth) throw DataError("attribute '" + std::string(key) + "' is out of range");
  }
  std::vector<RowColumn> columns;
  for (const auto& c : kColumns) {
    RowColumn column{c.name, c.stored, {}};
    if (c.width) column.shape.push_back(a.integers.at(c.width));
    columns.push_back(std::move(column));
  }
  return columns;
}

RolloutSchema schema_of(const RowAttributes& a) {
  RolloutSchema s;
  s.task_width = a.integers.at("task_width");
  s.prompt_width = a.integers.at("prompt_width");
  s.answer_width = a.integers.at("answer_width");
  s.samples = a.integers.at("samples");
  s.vocab_size = a.integers.at("vocab_size");
  s.model_sha256 = a.texts.at("model_sha256");
  s.plan = a.texts.at("plan");
  return s;
}

// Tokens into row r of a [n, width] tensor padded with -1.
void put_tokens(at::Tensor& rows, int64_t r, const std::vector<int32_t>& tokens, const char* what) {
  if (static_cast<int64_t>(tokens.size()) > rows.size(1))
    throw std::invalid_argument(std::string("rollout_rows: ") + what + " of " + std::to_string(tokens.size()) +
                                " tokens, wider than its " + std::to_string(rows.size(1)));
  std::copy(tokens.begin(), tokens.end(), rows[r].data_ptr<int32_t>());  // an empty answer has no data()
}

std::vector<int32_t> tokens_at(const at::Tensor& rows, const at::Tensor& lengths, int64_t r) {
  const int64_t n = lengths[r].item<int32_t>();
  const int32_t* p = rows[r].contiguous().data_ptr<int32_t>();
  return std::vector<int32_t>(p, p + std::max<int64_t>(0, std::min(n, rows.size(1))));
}

}  // namespace

RolloutRows rollout_rows(const std::vector<Rollout>& rollouts, const RolloutSchema& s) {
  const auto n = static_cast<int64_t>(rollouts.size());
  RolloutRows rows;
  rows.task = torch::zeros({n, s.task_width}, torch::kByte);
  rows.test_index = torch::empty({n}, torch::kInt);
  rows.item = torch::empty({n}, torch::kLong);
  rows.sample = torch::empty({n}, torch::kInt);
  rows.prompt_length = torch::empty({n}, torch::kInt);
  rows.prompt = torch::full({n, s.prompt_width}, -1, torch::kInt);
  rows.answer_length = torch::empty({n}, torch::kInt);
  rows.answer = torch::full({n, s.answer_width}, -1, torch::kInt);
  rows.logprob = torch::empty({n}, torch::kDouble);
  rows.cells_right = torch::empty({n}, torch::kInt);
  rows.cells = torch::empty({n}, torch::kInt);
  rows.label = torch::empty({n}, torch::kByte);
  for (int64_t r = 0; r < n; ++r) {
    const Rollout& x = rollouts[r];
    if (static_cast<int64_t>(x.task.size()) > s.task_width)
      throw std::invalid_argument("rollout_rows: task id \"" + x.task + "\" is wider than " + std::to_string(s.task_width));
    std::memcpy(rows.task[r].data_ptr<uint8_t>(), x.task.data(), x.task.size());
    rows.test_index[r] = x.test_index;
    rows.item[r] = x.item;
    rows.sample[r] = x.sample;
    rows.prompt_length[r] = static_cast<int32_t>(x.prompt.size());
    put_tokens(rows.prompt, r, x.prompt, "a prompt");
    rows.answer_length[r] = static_cast<int32_t>(x.answer.size());
    put_tokens(rows.answer, r, x.answer, "an answer");
    rows.logprob[r] = x.logprob;
    rows.cells_right[r] = x.cells_right;
    rows.cells[r] = x.cells;
    rows.label[r] = x.label ? 1 : 0;
  }
  return rows;
}

Rollout rollout_at(const RolloutRows& rows, int64_t r) {
  Rollout x;
  const auto task = rows.task[r].contiguous();
  const char* bytes = reinterpret_cast<const char*>(task.data_ptr<uint8_t>());
  x.task.assign(bytes, strnlen(bytes, static_cast<size_t>(task.numel())));
  x.test_index = rows.test_index[r].item<int32_t>();
  x.item = rows.item[r].item<int64_t>();
  x.sample = rows.sample[r].item<int32_t>();
  x.prompt = tokens_at(rows.prompt, rows.prompt_length, r);
  x.answer = tokens_at(rows.answer, rows.answer_length, r);
  x.logprob = rows.logprob[r].item<double>();
  x.cells_right = rows.cells_right[r].item<int32_t>();
  x.cells = rows.cells[r].item<int32_t>();
  x.label = rows.label[r].item<uint8_t>() != 0;
  return x;
}

const RowFormat& rollout_format() {
  static const RowFormat format{"rollout", kRolloutFormatVersion,
                                {"task_width", "prompt_width", "answer_width", "samples", "vocab_size"},
                                {"model_sha256", "plan"}, rollout_columns};
  return format;
}

RowAttributes rollout_attributes(const RolloutSchema& s) {
  return {{{"task_width", s.task_width},
           {"prompt_width", s.prompt_width},
           {"answer_width", s.answer_width},
           {"samples", s.samples},
           {"vocab_size", s.vocab_size}},
          {{"model_sha256", s.model_sha256}, {"plan", s.plan}}};
}

RolloutFileInfo inspect_rollout_file(const std::string& path) {
  RolloutFileInfo info{inspect_row_file(rollout_format(), path), {}};
  info.schema = schema_of(info.file.attributes);
  return info;
}

RolloutWriter::RolloutWriter(std::string path, const RolloutSchema& schema, WriterOptions options)
    : writer_(rollout_format(), std::move(path), rollout_attributes(schema), options) {}

void RolloutWriter::append(const RolloutRows& rows) {
  RowBlock block;
  for (const auto& c : kColumns) block.push_back(rows.*c.rows);
  writer_.append(std::move(block));
}

RolloutReader::RolloutReader(const std::string& path) : reader_(rollout_format(), path) {
  info_ = {reader_.info(), schema_of(reader_.info().attributes)};
}

RolloutRows RolloutReader::read(int64_t first, int64_t count) const {
  const RowBlock block = reader_.read(first, count);
  RolloutRows rows;
  for (size_t i = 0; i < std::size(kColumns); ++i) rows.*kColumns[i].rows = block[i];
  return rows;
}

}  // namespace crsm::data
