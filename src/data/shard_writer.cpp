#include "data/shard_writer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "data/data_error.h"

namespace crsm::data {

std::string shard_file_name(const std::string& split, int64_t ordinal) {
  char number[24];
  std::snprintf(number, sizeof number, "%03lld", static_cast<long long>(ordinal));
  return split + "_" + number + ".bin";
}

ShardWriter::ShardWriter(std::string dir, std::string split, TokenDtype dtype,
                         int64_t max_shard_tokens)
    : dir_(std::move(dir)), split_(std::move(split)), dtype_(dtype),
      max_shard_tokens_(max_shard_tokens) {
  if (max_shard_tokens_ <= 0)
    throw DataError("shard size must be positive, got " + std::to_string(max_shard_tokens_));
}

void ShardWriter::write(const std::vector<int32_t>& ids) {
  const int64_t width = element_bytes(dtype_);
  const int64_t limit = int64_t{1} << (8 * width);
  size_t next = 0;
  std::string bytes;
  while (next < ids.size()) {
    if (shards_.empty() || shards_.back().tokens == max_shard_tokens_) start_shard();
    const int64_t room = max_shard_tokens_ - shards_.back().tokens;
    const size_t n = static_cast<size_t>(std::min<int64_t>(room, ids.size() - next));
    bytes.resize(n * width);
    for (size_t i = 0; i < n; ++i) {
      const int64_t id = ids[next + i];
      if (id < 0 || id >= limit)
        throw DataError(path_ + ": token id " + std::to_string(id) +
                        " does not fit " + dtype_name(dtype_));
      // Little-endian whatever the host's byte order.
      for (int64_t b = 0; b < width; ++b)
        bytes[i * width + b] = static_cast<char>((id >> (8 * b)) & 0xff);
    }
    flush(bytes);
    shards_.back().tokens += static_cast<int64_t>(n);
    next += n;
  }
}

std::vector<ShardInfo> ShardWriter::finish() {
  close_shard();
  return shards_;
}

void ShardWriter::start_shard() {
  close_shard();
  shards_.push_back({shard_file_name(split_, static_cast<int64_t>(shards_.size())), 0});
  path_ = (std::filesystem::path(dir_) / shards_.back().file).string();
  out_.emplace(path_);
}

void ShardWriter::close_shard() {
  if (!out_) return;
  out_->commit();
  out_.reset();
}

void ShardWriter::flush(const std::string& bytes) { out_->write(bytes); }

}  // namespace crsm::data
