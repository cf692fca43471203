#pragma once

#include <cstddef>
#include <string>

namespace crsm::checkpoint {

// SHA-256 (FIPS 180-4), incremental, by OpenSSL's libcrypto (which uses the CPU's SHA
// instructions where it has them). Checkpoint manifests record one per file so a damaged
// checkpoint is detected before anything is loaded from it.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  std::string hex_digest();  // finishes the hash; call once

 private:
  struct Context;
  Context* context_;
};

// Hashes a whole file; throws FileError naming it if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace crsm::checkpoint
