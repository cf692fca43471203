#include "base/file_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace crsm::base {

namespace {

// An open regular file, closed on the way out; FileError naming the path otherwise.
class ReadableFile {
 public:
  explicit ReadableFile(const std::string& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) throw FileError(path + ": cannot be opened (" + std::strerror(errno) + ")");
    if (::fstat(fd_, &stat_) != 0 || !S_ISREG(stat_.st_mode)) {
      ::close(fd_);
      throw FileError(path + ": not a regular file (expected a file, got " +
                      (S_ISDIR(stat_.st_mode) ? "a directory" : "something else") + ")");
    }
  }
  ~ReadableFile() { ::close(fd_); }
  ReadableFile(const ReadableFile&) = delete;
  ReadableFile& operator=(const ReadableFile&) = delete;

  size_t size() const { return static_cast<size_t>(stat_.st_size); }
  // Up to `count` bytes; 0 at the end.
  size_t read(char* into, size_t count) {
    for (;;) {
      const ssize_t n = ::read(fd_, into, count);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) throw FileError(path_ + ": cannot be read (" + std::strerror(errno) + ")");
    }
  }

 private:
  std::string path_;
  int fd_;
  struct stat stat_ {};
};

}  // namespace

std::string read_file(const std::string& path) {
  ReadableFile file(path);
  std::string bytes(file.size(), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const size_t n = file.read(bytes.data() + done, bytes.size() - done);
    if (n == 0) break;  // shrank while we read: keep what is there
    done += n;
  }
  bytes.resize(done);
  return bytes;
}

void for_each_line(const std::string& path, const std::function<bool(const std::string& line, int64_t number)>& take) {
  ReadableFile file(path);
  std::string buffer(1 << 20, '\0'), line;
  int64_t number = 0;
  for (size_t n; (n = file.read(buffer.data(), buffer.size())) > 0;) {
    for (size_t at = 0; at < n;) {
      const char* end = static_cast<const char*>(std::memchr(buffer.data() + at, '\n', n - at));
      if (!end) {
        line.append(buffer, at, n - at);
        break;
      }
      const size_t stop = static_cast<size_t>(end - buffer.data());
      line.append(buffer, at, stop - at);
      if (!take(line, ++number)) return;
      line.clear();
      at = stop + 1;
    }
  }
  if (!line.empty()) take(line, ++number);
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e999
    throw FileError(path + ": malformed JSON (" + e.what() + ")");
  }
}

}  // namespace crsm::base
