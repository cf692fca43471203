#pragma once

// The one way this project writes an output file. The bytes go to a new temporary
// file beside the target (same directory, so the rename never crosses a file system);
// commit() syncs them, renames the file over the target and syncs the directory. Until
// commit() returns the target holds its old contents (or does not exist), after it the
// complete new ones, and a crash at any moment leaves one or the other: never a torn
// file, never an empty one where data was.

#include <cstddef>
#include <string>
#include <string_view>

namespace crsm::base {

class AtomicFile {
 public:
  // Creates the temporary file; FileError naming `path` if its directory is missing or
  // not writable.
  explicit AtomicFile(std::string path);
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void commit();

  const std::string& path() const { return path_; }

 private:
  void discard() noexcept;

  std::string path_;
  std::string tmp_;
  int fd_ = -1;
};

// One AtomicFile, written whole.
void write_file_atomically(const std::string& path, std::string_view bytes);

// A small log file (one line per event) with `line` added at its end, written whole as
// above: the file is never seen with half a line.
void append_line_atomically(const std::string& path, std::string_view line);

// fsync(2) of a directory, so that renames and new entries in it survive a crash.
// FileError naming it when it cannot be opened.
void sync_directory(const std::string& dir);

// The directory holding `path` ("." for a bare file name).
std::string parent_directory(const std::string& path);

}  // namespace crsm::base
