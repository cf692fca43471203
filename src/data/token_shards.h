#pragma once

// Read side of a prepared corpus (see shard_format.h): one split's shards, memory-
// mapped, addressed as one contiguous token sequence.

#include <cstdint>
#include <string>
#include <vector>

namespace crsm::data {

class TokenSplit {
 public:
  // Opens data_dir/index.json and maps every shard of `split` ("train" or "val").
  // DataError if the index is missing or malformed, lacks the split, names an unknown
  // dtype, or a shard is missing or its byte size is not tokens * element size
  // ("<dir>: shard train_000.bin is truncated: X bytes, index says Y tokens (Z bytes)").
  static TokenSplit open(const std::string& data_dir, const std::string& split);

  ~TokenSplit();
  TokenSplit(TokenSplit&&) noexcept;
  TokenSplit& operator=(TokenSplit&&) noexcept;
  TokenSplit(const TokenSplit&) = delete;
  TokenSplit& operator=(const TokenSplit&) = delete;

  int64_t size() const { return size_; }  // tokens across shards, in order
  int64_t vocab_size() const { return vocab_size_; }

  // Copies tokens [start, start + count) into out, crossing shard boundaries as needed.
  // DataError if the range is outside [0, size()) or a token is >= vocab_size (a
  // damaged shard).
  void read(int64_t start, int64_t count, int64_t* out) const;

 private:
  struct Shard;
  TokenSplit();

  std::string where_;  // "<data_dir> (split)" for error messages
  int64_t size_ = 0;
  int64_t vocab_size_ = 0;
  int64_t element_bytes_ = 0;
  std::vector<Shard> shards_;
};

}  // namespace crsm::data
