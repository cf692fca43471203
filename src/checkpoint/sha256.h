#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace crsm::checkpoint {

// SHA-256 (FIPS 180-4), incremental. Checkpoint manifests record one per file so a
// damaged checkpoint is detected before anything is loaded from it.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  std::string hex_digest();  // finishes the hash; call once

 private:
  uint32_t state_[8];
  void (*blocks_)(uint32_t state[8], const uint8_t* blocks, size_t count);
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Hashes a whole file; throws FileError naming it if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace crsm::checkpoint
