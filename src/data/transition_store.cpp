#include "data/transition_store.h"

#include <torch/torch.h>

#include "base/error.h"
#include "data/data_error.h"

namespace crsm::data {
namespace {

// The columns in the order a block is written (/pos last: it commits the block), each
// with its member of TransitionRows.
struct TransitionColumn {
  const char* name;
  at::Tensor TransitionRows::*rows;
  bool per_layer;  // [N, L, d_model] states in the schema's dtype; else [N] integers
  StoredType integer;
};
const TransitionColumn kColumns[] = {
    {"state", &TransitionRows::state, true, StoredType::kFloat32},
    {"delta", &TransitionRows::delta, true, StoredType::kFloat32},
    {"action", &TransitionRows::action, false, StoredType::kInt32},
    {"seq", &TransitionRows::seq, false, StoredType::kInt64},
    {"pos", &TransitionRows::pos, false, StoredType::kInt32},
};

std::vector<RowColumn> transition_columns(const RowAttributes& a) {
  for (const char* key : {"num_layers", "d_model", "vocab_size"}) {
    const int64_t v = a.integers.at(key);
    if (v < 1 || v > (int64_t{1} << 31)) throw DataError("attribute '" + std::string(key) + "' is out of range");
  }
  const std::string& dtype = a.texts.at("dtype");
  if (dtype != "float32" && dtype != "float16")
    throw DataError("attribute 'dtype' is \"" + dtype + "\", expected \"float32\" or \"float16\"");
  const StoredType states = dtype == "float16" ? StoredType::kFloat16 : StoredType::kFloat32;
  std::vector<RowColumn> columns;
  for (const auto& c : kColumns)
    columns.push_back(c.per_layer ? RowColumn{c.name, states, {a.integers.at("num_layers"), a.integers.at("d_model")}}
                                  : RowColumn{c.name, c.integer, {}});
  return columns;
}

RowAttributes attributes_of(const TransitionSchema& s) {
  return {{{"num_layers", s.num_layers}, {"d_model", s.d_model}, {"vocab_size", s.vocab_size}},
          {{"dtype", to_string(s.dtype)}, {"backbone_sha256", s.backbone_sha256}, {"plan", s.plan}}};
}

TransitionFileInfo transition_info(const RowFileInfo& r) {
  TransitionFileInfo info;
  info.path = r.path;
  auto& s = info.schema;
  s.num_layers = r.attributes.integers.at("num_layers");
  s.d_model = r.attributes.integers.at("d_model");
  s.vocab_size = r.attributes.integers.at("vocab_size");
  s.dtype = parse_transition_dtype(r.attributes.texts.at("dtype"));
  s.backbone_sha256 = r.attributes.texts.at("backbone_sha256");
  s.plan = r.attributes.texts.at("plan");
  info.rows = r.rows;
  info.format_version = kTransitionFormatVersion;
  info.compression = r.compression;
  info.chunk_rows = r.chunk_rows;
  info.sources = r.sources;
  return info;
}

void check_field(const std::string& path, const char* field, const std::string& got, const std::string& want) {
  if (got != want)
    throw DataError(path + ": field '" + std::string(field) + "' is " + got + ", but the model in use has " + want);
}

}  // namespace

const RowFormat& transition_format() {
  static const RowFormat format{"transition", kTransitionFormatVersion, {"num_layers", "d_model", "vocab_size"},
                                {"dtype", "backbone_sha256", "plan"}, transition_columns};
  return format;
}

TransitionRows TransitionRows::slice(int64_t first, int64_t n) const {
  TransitionRows out;
  for (const auto& c : kColumns) out.*c.rows = (this->*c.rows).narrow(0, first, n);
  return out;
}

TransitionDtype parse_transition_dtype(const std::string& word) {
  if (word == "float32") return TransitionDtype::kFloat32;
  if (word == "float16") return TransitionDtype::kFloat16;
  throw UsageError("dtype \"" + word + "\": expected float32 or float16");
}

std::string to_string(TransitionDtype dtype) { return dtype == TransitionDtype::kFloat16 ? "float16" : "float32"; }

int64_t max_chunk_rows(const TransitionSchema& s) { return max_chunk_rows(transition_columns(attributes_of(s))); }

TransitionFileInfo inspect_transition_file(const std::string& path) {
  return transition_info(inspect_row_file(transition_format(), path));
}

void check_schema(const TransitionFileInfo& info, const TransitionSchema& e) {
  const auto& s = info.schema;
  check_field(info.path, "num_layers", std::to_string(s.num_layers), std::to_string(e.num_layers));
  check_field(info.path, "d_model", std::to_string(s.d_model), std::to_string(e.d_model));
  check_field(info.path, "vocab_size", std::to_string(s.vocab_size), std::to_string(e.vocab_size));
  check_field(info.path, "dtype", to_string(s.dtype), to_string(e.dtype));
  check_field(info.path, "backbone_sha256", s.backbone_sha256, e.backbone_sha256);
}

TransitionWriter::TransitionWriter(std::string path, const TransitionSchema& schema, WriterOptions options)
    : writer_(transition_format(), std::move(path), attributes_of(schema), options) {}

void TransitionWriter::append(const TransitionRows& rows) {
  RowBlock block;
  for (const auto& c : kColumns) block.push_back(rows.*c.rows);
  writer_.append(std::move(block));
}

TransitionReader::TransitionReader(const std::string& path)
    : reader_(transition_format(), path), info_(transition_info(reader_.info())) {}

TransitionRows TransitionReader::read(int64_t first, int64_t count) const {
  const RowBlock block = reader_.read(first, count);
  TransitionRows rows;
  for (size_t i = 0; i < std::size(kColumns); ++i) rows.*kColumns[i].rows = block[i];
  return rows;
}

void write_master_file(const std::string& master, const std::vector<std::string>& rank_files) {
  write_master_file(transition_format(), master, rank_files);
}

}  // namespace crsm::data
