#pragma once

// Append-only HDF5 files of rows, written by one rank each and joined by a master file
// (SPEC §7, §9): the machinery that every such store shares. A format (transitions,
// rollouts) names its datasets, one per column, each [N, ...] with N the rows, and the
// attributes every file carries; this file does the rest:
//
// - Writing: a background thread and a bounded queue; rows are written in chunks of
//   chunk_rows (extendible datasets, chunked along N, optionally shuffle + gzip with a
//   Fletcher-32 checksum per chunk), in the format's column order. The last column has
//   one value per row and commits a block: a block counts as written once it covers it
//   and the file is flushed.
// - Crash safety: files are written in SWMR mode. After a SIGKILL every flushed row is
//   readable (h5py: File(path, "r", swmr=True), or h5clear -s first), and a writer
//   reopened on the file keeps exactly those rows. Files are created whole (under a
//   temporary name, renamed once their datasets exist).
// - Joining: a master file holds every dataset as an HDF5 virtual dataset over the rank
//   files, in rank order, by paths relative to the master (the directory moves as one
//   piece), with the rank files' attributes. Reading through a master checks that every
//   rank file it maps is there, whole, and of its collection.
//
// HDF5 is serial here: while a RowWriter is open its thread is the only one that calls
// HDF5, so nothing else may open a row file until close().

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crsm::data {

// How a column is stored. Rows cross this API in memory types: int32, int64, uint8,
// float32 (for kFloat16 and kFloat32), float64, and uint8 [n, width] for kString
// (fixed-width byte strings, NUL-padded: h5py reads them as bytes).
enum class StoredType { kInt32, kInt64, kUInt8, kFloat16, kFloat32, kFloat64, kString };

struct RowColumn {
  std::string name;
  StoredType stored = StoredType::kInt32;
  std::vector<int64_t> shape;  // after N; a kString column: {width}
};

// One tensor per column, in the format's order, each [n, shape...] of the memory type.
using RowBlock = std::vector<at::Tensor>;
int64_t block_rows(const RowBlock& block);
RowBlock slice_rows(const RowBlock& block, int64_t first, int64_t n);  // views

struct RowAttributes {
  std::map<std::string, int64_t> integers;
  std::map<std::string, std::string> texts;
};

struct RowFormat {
  std::string kind;  // "transition", "rollout": errors name "a <kind> file"
  int64_t version = 1;  // the attribute format_version every file carries
  std::vector<std::string> integer_keys, text_keys;  // the other attributes, in the order they are compared
  // The columns of a file with these attributes, in the order a block is written.
  // Throws DataError (the message after "<path>: ") for attributes out of range.
  std::function<std::vector<RowColumn>(const RowAttributes&)> columns;
};

enum class Compression { kNone, kGzip };  // gzip: shuffle filter + deflate level 4
// "none" or "gzip"; crsm::UsageError otherwise.
Compression parse_compression(const std::string& word);
std::string to_string(Compression compression);

struct WriterOptions {
  int64_t chunk_rows = 256;  // rows per HDF5 chunk (at most max_chunk_rows); the file is flushed every chunk
  Compression compression = Compression::kNone;
  int64_t queue_blocks = 8;  // appended blocks waiting for the writer thread before append() blocks
};

// The most rows one HDF5 chunk of these columns can hold: HDF5 caps a chunk at 4 GiB.
int64_t max_chunk_rows(const std::vector<RowColumn>& columns);

struct WriterStats {
  int64_t rows = 0;             // in the file at close
  int64_t rows_at_open = 0;     // kept from an earlier run
  double append_wait_s = 0;     // time append() spent waiting on a full queue
  double write_s = 0;           // time the writer thread spent in HDF5
  int64_t bytes = 0;            // payload bytes written by this writer
};

// A rank file a master file joins: its rows [first, first + rows) of the master.
struct RowSource {
  std::string path;
  int64_t first = 0, rows = 0;
};

struct RowFileInfo {
  std::string path;
  RowAttributes attributes;
  std::vector<RowColumn> columns;
  int64_t rows = 0;
  Compression compression = Compression::kNone;  // of a rank file's datasets
  int64_t chunk_rows = 0;                         // of a rank file's datasets
  std::vector<RowSource> sources;                 // of a master file, in row order
};

// Opens a rank or master file read-only and checks it is a file of `format`: every
// attribute and every dataset present, with the shapes and types its attributes imply;
// a master's rank files too, each holding the rows mapped, with the master's attributes.
// DataError naming the file (the rank file, for a master's) and the field otherwise (a
// missing, truncated, foreign or swapped file too).
RowFileInfo inspect_row_file(const RowFormat& format, const std::string& path);

// DataError "<info.path>: field 'K' is A, but <whose> has B" for the first attribute of
// the format's that differs, followed by `consequence`.
void check_same_attributes(const RowFormat& format, const RowFileInfo& info, const RowAttributes& expected,
                           const std::string& whose, const std::string& consequence);

// Streams rows to one rank file through a background thread and a bounded queue.
class RowWriter {
 public:
  // Creates `path` (whole or not at all), or reopens a file of the same format and
  // attributes and keeps its committed rows (a torn tail beyond the last flush is
  // dropped), rewritten with `options`' chunks and compression. DataError naming the path
  // and the field when an existing file is not of the format or has other attributes.
  RowWriter(const RowFormat& format, std::string path, RowAttributes attributes, WriterOptions options = {});
  ~RowWriter();  // close()s, swallowing an error (call close() to see it)
  RowWriter(const RowWriter&) = delete;
  RowWriter& operator=(const RowWriter&) = delete;

  // Rows in the file once everything appended so far is written.
  int64_t rows() const { return rows_at_open_ + appended_; }
  // Queues a block (shapes and types checked here: std::invalid_argument naming the
  // column); blocks while the queue is full. Rethrows the writer thread's error, if any.
  void append(RowBlock rows);
  // Writes what is queued, flushes and closes; rethrows the writer thread's error.
  WriterStats close();

 private:
  void run();
  void write_block(const RowBlock& rows);

  std::string path_;
  std::vector<RowColumn> columns_;
  WriterOptions options_;
  int64_t rows_at_open_ = 0, appended_ = 0;
  int64_t file_ = -1;  // hid_t
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<RowBlock> queue_;
  RowBlock pending_;  // rows of a partial chunk, written at the next chunk or at close
  bool closing_ = false, closed_ = false;
  std::exception_ptr error_;
  WriterStats stats_;
  std::thread thread_;
};

// Random access to the rows of a rank or master file (not thread-safe).
class RowReader {
 public:
  RowReader(const RowFormat& format, const std::string& path);  // inspect_row_file, then open
  ~RowReader();
  RowReader(const RowReader&) = delete;
  RowReader& operator=(const RowReader&) = delete;

  const RowFileInfo& info() const { return info_; }
  int64_t rows() const { return info_.rows; }
  // Rows [first, first + count); DataError when the range is outside the file or a read
  // fails (naming the file, and for a master the rank file that could not be read).
  RowBlock read(int64_t first, int64_t count) const;

 private:
  RowFormat format_;
  RowFileInfo info_;
  int64_t file_ = -1;
};

// Writes `master` joining `rank_files` (in order, each complete, of one format and the
// same attributes) as one logical file with their attributes. Atomic: a reader sees the
// old master or the new one. DataError naming a file that disagrees.
void write_master_file(const RowFormat& format, const std::string& master, const std::vector<std::string>& rank_files);

}  // namespace crsm::data
