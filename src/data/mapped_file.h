#pragma once

#include <cstddef>
#include <string>

namespace crsm::data {

// A whole file mapped read-only; unmapped on destruction. Move-only.
class MappedFile {
 public:
  // DataError naming the path if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }  // null for an empty file
  size_t size() const { return size_; }

 private:
  void unmap();

  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace crsm::data
