#include "base/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/file_read.h"

namespace crsm::base {
namespace {

std::string reason() { return std::strerror(errno); }

// A name no other writer of the same target uses: several ranks or threads may be
// writing beside each other.
std::string temporary_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

}  // namespace

std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw FileError(dir + ": cannot open the directory to sync it (" + reason() + ")");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync directories (EINVAL); the rename has still happened.
  if (rc != 0 && err != EINVAL)
    throw FileError(dir + ": cannot sync the directory (" + std::strerror(err) + ")");
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  for (int attempt = 0; fd_ < 0; ++attempt) {
    tmp_ = temporary_name(path_);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0 && (errno != EEXIST || attempt > 100))
      throw FileError(path_ + ": cannot create a file in " + parent_directory(path_) + " (" + reason() + ")");
  }
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() noexcept {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
  fd_ = -1;
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (fd_ < 0) throw FileError(path_ + ": written after it was committed or failed");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? reason() : "nothing written";
      discard();
      throw FileError(path_ + ": cannot write (" + why + ")");
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) throw FileError(path_ + ": committed twice or after a failed write");
  if (::fsync(fd_) != 0) {
    const std::string why = reason();
    discard();
    throw FileError(path_ + ": cannot sync to disk (" + why + ")");
  }
  if (::close(fd_) != 0) {
    const std::string why = reason();
    fd_ = -1;
    ::unlink(tmp_.c_str());
    throw FileError(path_ + ": cannot write (" + why + ")");
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = reason();
    ::unlink(tmp_.c_str());
    throw FileError(path_ + ": cannot replace (" + why + ")");
  }
  sync_directory(parent_directory(path_));
}

void append_line_atomically(const std::string& path, std::string_view line) {
  std::error_code ec;
  std::string text = std::filesystem::exists(path, ec) ? read_file(path) : std::string();
  if (!text.empty() && text.back() != '\n') text += '\n';
  text.append(line);
  text += '\n';
  write_file_atomically(path, text);
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

}  // namespace crsm::base
