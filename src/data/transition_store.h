#pragma once

// The HDF5 transition store of distillation (SPEC §7). Every rank writes its own file:
//   /state  [N, L, d_model]  float32 or float16   h_l(t), per layer
//   /delta  [N, L, d_model]  same dtype           h_l(t+1) - h_l(t)
//   /action [N] int32    the token consumed between the two states
//   /seq    [N] int64    the collection window the row comes from
//   /pos    [N] int32    the position t inside that window
// chunked along N (chunk_rows rows per chunk), optionally shuffle + gzip with a
// Fletcher-32 checksum per chunk, extendible.
// Root attributes: format_version, num_layers, d_model, vocab_size, dtype,
// backbone_sha256, plan. A master file joins the rank files, in rank order, as the same
// five datasets made of HDF5 virtual datasets (relative paths: the directory moves as
// one piece).
//
// Crash safety: files are written in SWMR mode, and a block of rows counts as written
// once /pos, which is extended and written last, covers it and the file is flushed.
// After a SIGKILL every flushed row is readable (h5py: File(path, "r", swmr=True), or
// h5clear -s first), and a writer reopened on the file keeps exactly those rows.
//
// HDF5 is serial here: while a TransitionWriter is open its thread is the only one that
// calls HDF5, so nothing else may open a transition file until close().

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crsm::data {

inline constexpr int kTransitionFormatVersion = 1;

// How /state and /delta are stored (rows are always handed over and read as float32).
enum class TransitionDtype { kFloat32, kFloat16 };
// "float32" or "float16"; crsm::UsageError naming the word and the choices otherwise.
TransitionDtype parse_transition_dtype(const std::string& word);
std::string to_string(TransitionDtype dtype);

enum class Compression { kNone, kGzip };  // gzip: shuffle filter + deflate level 4
// "none" or "gzip"; crsm::UsageError otherwise.
Compression parse_compression(const std::string& word);
std::string to_string(Compression compression);

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

// The datasets of a transition file, one per column of TransitionRows, in the order a
// block is written: /pos last, as it commits the block. The one list every reader and
// writer of the format goes through.
struct TransitionColumn {
  const char* name;
  at::Tensor TransitionRows::*rows;
  bool per_layer;       // [N, L, d_model] states in the schema's dtype; else [N] integers
  at::ScalarType type;  // as rows hold it: float32, int32 or int64
};
inline const TransitionColumn kTransitionColumns[] = {
    {"state", &TransitionRows::state, true, at::kFloat},  {"delta", &TransitionRows::delta, true, at::kFloat},
    {"action", &TransitionRows::action, false, at::kInt}, {"seq", &TransitionRows::seq, false, at::kLong},
    {"pos", &TransitionRows::pos, false, at::kInt},
};

struct WriterOptions {
  int64_t chunk_rows = 256;  // rows per HDF5 chunk (at most max_chunk_rows); the file is flushed every chunk
  Compression compression = Compression::kNone;
  int64_t queue_blocks = 8;  // appended blocks waiting for the writer thread before append() blocks
};

// The most rows one HDF5 chunk of /state or /delta can hold: HDF5 caps a chunk at 4 GiB.
int64_t max_chunk_rows(const TransitionSchema& schema);

struct WriterStats {
  int64_t rows = 0;             // in the file at close
  int64_t rows_at_open = 0;     // kept from an earlier run
  double append_wait_s = 0;     // time append() spent waiting on a full queue
  double write_s = 0;           // time the writer thread spent in HDF5
  int64_t bytes = 0;            // payload bytes written by this writer
};

// Streams rows to one rank file through a background thread and a bounded queue.
class TransitionWriter {
 public:
  // Creates `path` (whole or not at all: it appears once its datasets exist), or reopens
  // a file of the same schema and plan and keeps its committed rows (a torn tail beyond
  // the last flush is dropped), rewritten with `options`' chunks and compression.
  // DataError naming the path and the field when an existing file is not a transition
  // file or disagrees.
  TransitionWriter(std::string path, TransitionSchema schema, WriterOptions options = {});
  ~TransitionWriter();  // close()s, swallowing an error (call close() to see it)
  TransitionWriter(const TransitionWriter&) = delete;
  TransitionWriter& operator=(const TransitionWriter&) = delete;

  // Rows in the file once everything appended so far is written.
  int64_t rows() const { return rows_at_open_ + appended_; }
  // Queues a block (shapes checked here: std::invalid_argument naming the tensor);
  // blocks while the queue is full. Rethrows the writer thread's error, if it had one.
  void append(TransitionRows rows);
  // Writes what is queued, flushes and closes; rethrows the writer thread's error.
  WriterStats close();

 private:
  void run();
  void write_block(const TransitionRows& rows);

  std::string path_;
  TransitionSchema schema_;
  WriterOptions options_;
  int64_t rows_at_open_ = 0, appended_ = 0;
  int64_t file_ = -1;  // hid_t
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<TransitionRows> queue_;
  TransitionRows pending_;  // rows of a partial chunk, written at the next chunk or at close
  bool closing_ = false, closed_ = false;
  std::exception_ptr error_;
  WriterStats stats_;
  std::thread thread_;
};

// A rank file a master file joins: its rows [first, first + rows) of the master.
struct TransitionSource {
  std::string path;
  int64_t first = 0, rows = 0;
};

struct TransitionFileInfo {
  std::string path;
  TransitionSchema schema;
  int64_t rows = 0;
  int format_version = 0;
  Compression compression = Compression::kNone;  // of a rank file's datasets
  int64_t chunk_rows = 0;                         // of a rank file's datasets
  std::vector<TransitionSource> sources;          // of a master file, in row order
};

// Opens a rank or master file read-only and checks it is a transition file: every
// dataset present with the shapes and types above and every attribute present; a master's
// rank files too, each complete and of the master's schema and plan. DataError naming the
// file (the rank file, for a master's) and the field otherwise (a missing, truncated,
// foreign or swapped file too).
TransitionFileInfo inspect_transition_file(const std::string& path);

// DataError naming info.path and the first field (num_layers, d_model, vocab_size,
// dtype, backbone_sha256) that differs from `expected`; `plan` is not compared.
void check_schema(const TransitionFileInfo& info, const TransitionSchema& expected);

// Random access to the rows of a rank or master file (not thread-safe).
class TransitionReader {
 public:
  explicit TransitionReader(const std::string& path);  // inspect_transition_file, then open
  ~TransitionReader();
  TransitionReader(const TransitionReader&) = delete;
  TransitionReader& operator=(const TransitionReader&) = delete;

  const TransitionFileInfo& info() const { return info_; }
  int64_t rows() const { return info_.rows; }
  // Rows [first, first + count), state and delta as float32; DataError when the range
  // is outside the file or a read fails (naming the file, and for a master the rank
  // file that could not be read).
  TransitionRows read(int64_t first, int64_t count) const;

 private:
  TransitionFileInfo info_;
  int64_t file_ = -1;
};

// Writes `master` joining `rank_files` (in order, each complete and of one schema) as
// one logical dataset; the master's attributes are the rank files' schema. Atomic: a
// reader sees the old master or the new one. DataError naming a file that disagrees.
void write_master_file(const std::string& master, const std::vector<std::string>& rank_files);

}  // namespace crsm::data
