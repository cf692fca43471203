#pragma once

// The HDF5 transition store of distillation (SPEC §7), a row store (data/row_store.h:
// rank files written in SWMR mode, crash-resume, a virtual-dataset master). Every rank
// writes its own file:
//   /state  [N, L, d_model]  float32 or float16   h_l(t), per layer
//   /delta  [N, L, d_model]  same dtype           h_l(t+1) - h_l(t)
//   /action [N] int32    the token consumed between the two states
//   /seq    [N] int64    the collection window the row comes from
//   /pos    [N] int32    the position t inside that window
// Root attributes: format_version, num_layers, d_model, vocab_size, dtype,
// backbone_sha256, plan.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/row_store.h"

namespace crsm::data {

inline constexpr int kTransitionFormatVersion = 1;

// How /state and /delta are stored (rows are always handed over and read as float32).
enum class TransitionDtype { kFloat32, kFloat16 };
// "float32" or "float16"; crsm::UsageError naming the word and the choices otherwise.
TransitionDtype parse_transition_dtype(const std::string& word);
std::string to_string(TransitionDtype dtype);

// What every file of one collection agrees on; a file that disagrees with the model in
// use is refused by check_schema.
struct TransitionSchema {
  int64_t num_layers = 0, d_model = 0, vocab_size = 0;
  TransitionDtype dtype = TransitionDtype::kFloat32;
  std::string backbone_sha256;  // of the backbone checkpoint's model.safetensors
  std::string plan;             // the collection plan's description: resume only the same plan
};

// Rows on the CPU: state and delta float32 [n, L, D], action int32 [n], seq int64 [n],
// pos int32 [n].
struct TransitionRows {
  at::Tensor state, delta, action, seq, pos;
  int64_t size() const { return action.defined() ? action.size(0) : 0; }
  // Rows [first, first + n), as views.
  TransitionRows slice(int64_t first, int64_t n) const;
};

// The one format description every reader and writer of transition files goes through.
const RowFormat& transition_format();

// The most rows one HDF5 chunk of /state or /delta can hold: HDF5 caps a chunk at 4 GiB.
int64_t max_chunk_rows(const TransitionSchema& schema);

struct TransitionFileInfo {
  std::string path;
  TransitionSchema schema;
  int64_t rows = 0;
  int format_version = 0;
  Compression compression = Compression::kNone;  // of a rank file's datasets
  int64_t chunk_rows = 0;                         // of a rank file's datasets
  std::vector<RowSource> sources;                 // of a master file, in row order
};

// inspect_row_file for transition files (DataError naming the file and the field).
TransitionFileInfo inspect_transition_file(const std::string& path);

// DataError naming info.path and the first field (num_layers, d_model, vocab_size,
// dtype, backbone_sha256) that differs from `expected`; `plan` is not compared.
void check_schema(const TransitionFileInfo& info, const TransitionSchema& expected);

// A RowWriter of transition rows (see RowWriter for resume and crash safety).
class TransitionWriter {
 public:
  TransitionWriter(std::string path, const TransitionSchema& schema, WriterOptions options = {});
  int64_t rows() const { return writer_.rows(); }
  // Shapes checked here: std::invalid_argument naming the column.
  void append(const TransitionRows& rows);
  WriterStats close() { return writer_.close(); }

 private:
  RowWriter writer_;
};

// Random access to the rows of a rank or master file (not thread-safe).
class TransitionReader {
 public:
  explicit TransitionReader(const std::string& path);
  const TransitionFileInfo& info() const { return info_; }
  int64_t rows() const { return info_.rows; }
  // Rows [first, first + count), state and delta as float32 (see RowReader::read).
  TransitionRows read(int64_t first, int64_t count) const;

 private:
  RowReader reader_;
  TransitionFileInfo info_;
};

// write_master_file of transition rank files.
void write_master_file(const std::string& master, const std::vector<std::string>& rank_files);

}  // namespace crsm::data
