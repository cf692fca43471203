#pragma once

// The on-disk layout of a prepared corpus: data_dir/index.json describes, per split,
// an ordered list of shards; each shard is a flat array of little-endian uint16 or
// uint32 token ids (no header), so numpy.memmap reads it directly.

#include <cstdint>
#include <string>

namespace crsm::data {

inline constexpr int kIndexFormatVersion = 1;
inline constexpr const char* kIndexFile = "index.json";
// 2^28 tokens: 512 MiB of uint16, 1 GiB of uint32 per shard.
inline constexpr int64_t kMaxShardTokens = int64_t{1} << 28;

enum class TokenDtype { kUint16, kUint32 };

inline TokenDtype dtype_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDtype::kUint16 : TokenDtype::kUint32;
}

inline int64_t element_bytes(TokenDtype t) { return t == TokenDtype::kUint16 ? 2 : 4; }

inline std::string dtype_name(TokenDtype t) { return t == TokenDtype::kUint16 ? "uint16" : "uint32"; }

// The shard file of `split` with the given ordinal: "train_000.bin", ...
std::string shard_file_name(const std::string& split, int64_t ordinal);

}  // namespace crsm::data
