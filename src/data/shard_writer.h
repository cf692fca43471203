#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/atomic_file.h"
#include "data/shard_format.h"

namespace crsm::data {

struct ShardInfo {
  std::string file;  // name within the data directory
  int64_t tokens = 0;
};

// Appends token ids to <split>_000.bin, <split>_001.bin, ... in `dir`, starting a new
// shard every max_shard_tokens tokens. Each shard is a base::AtomicFile, committed
// (synced) when it is full or at finish().
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string split, TokenDtype dtype,
              int64_t max_shard_tokens = kMaxShardTokens);

  // DataError if an id does not fit the dtype, FileError if a write fails (naming the shard).
  void write(const std::vector<int32_t>& ids);

  // Closes the last shard; returns every shard written, in order.
  std::vector<ShardInfo> finish();

 private:
  void start_shard();
  void close_shard();
  void flush(const std::string& bytes);

  std::string dir_, split_;
  std::string path_;  // of the shard being written
  TokenDtype dtype_;
  int64_t max_shard_tokens_;
  std::vector<ShardInfo> shards_;
  std::optional<base::AtomicFile> out_;
};

}  // namespace crsm::data
