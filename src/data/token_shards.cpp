#include "data/token_shards.h"

#include <algorithm>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>

#include "data/data_error.h"
#include "base/file_read.h"
#include "data/mapped_file.h"
#include "data/shard_format.h"

namespace crsm::data {

struct TokenSplit::Shard {
  std::string file;
  int64_t first = 0;  // index of its first token in the split
  int64_t tokens = 0;
  MappedFile map;
};

namespace {

using nlohmann::json;

const json& require(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw DataError(where + ": missing key \"" + key + "\"");
  return j.at(key);
}

int64_t require_int(const json& j, const char* key, int64_t min, int64_t max, const std::string& where) {
  const json& v = require(j, key, where);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(max)) ||
      v.get<int64_t>() < min || v.get<int64_t>() > max)
    throw DataError(where + ": \"" + key + "\" must be an integer from " + std::to_string(min) + " to " +
                    std::to_string(max) + ", got " + v.dump());
  return v.get<int64_t>();
}

// A split's shards together: far beyond any corpus, small enough to count in int64.
constexpr int64_t kMaxSplitTokens = int64_t{1} << 48;

// A shard name must stay inside the data directory.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

}  // namespace

TokenSplit::TokenSplit() = default;
TokenSplit::~TokenSplit() = default;
TokenSplit::TokenSplit(TokenSplit&&) noexcept = default;
TokenSplit& TokenSplit::operator=(TokenSplit&&) noexcept = default;

TokenSplit TokenSplit::open(const std::string& data_dir, const std::string& split) {
  namespace fs = std::filesystem;
  const std::string index_path = (fs::path(data_dir) / kIndexFile).string();
  const json index = base::read_json_file(index_path);

  const int64_t version = require_int(index, "format_version", 0, std::numeric_limits<int64_t>::max(), index_path);
  if (version != kIndexFormatVersion)
    throw DataError(index_path + ": \"format_version\" must be " +
                    std::to_string(kIndexFormatVersion) + ", got " + std::to_string(version));
  const json& dtype = require(index, "dtype", index_path);
  TokenDtype type;
  if (dtype == "uint16")
    type = TokenDtype::kUint16;
  else if (dtype == "uint32")
    type = TokenDtype::kUint32;
  else
    throw DataError(index_path + ": \"dtype\" must be \"uint16\" or \"uint32\", got " + dtype.dump());

  const json& splits = require(index, "splits", index_path);
  if (!splits.is_object() || !splits.contains(split))
    throw DataError(index_path + ": has no split \"" + split + "\"");
  const std::string split_where = index_path + " (split \"" + split + "\")";
  const json& shards = require(splits.at(split), "shards", split_where);
  if (!shards.is_array()) throw DataError(split_where + ": \"shards\" must be an array");

  TokenSplit s;
  s.where_ = data_dir + " (" + split + ")";
  s.vocab_size_ = require_int(index, "vocab_size", 1, (int64_t{1} << 32), index_path);
  s.element_bytes_ = element_bytes(type);
  for (const json& entry : shards) {
    const json& file = require(entry, "file", split_where);
    if (!file.is_string() || !is_plain_file_name(file.get<std::string>()))
      throw DataError(split_where + ": shard \"file\" must be a file name, got " + file.dump());
    const std::string name = file.get<std::string>();
    // Shards are written kMaxShardTokens at most, which bounds tokens * element size.
    const int64_t tokens = require_int(entry, "tokens", 0, kMaxShardTokens, split_where);
    if (s.size_ > kMaxSplitTokens - tokens)
      throw DataError(split_where + ": its shards hold more than 2^48 tokens");
    MappedFile map((fs::path(data_dir) / name).string());
    const int64_t expected = tokens * s.element_bytes_;
    const auto actual = static_cast<int64_t>(map.size());
    if (actual != expected)
      throw DataError(data_dir + ": shard " + name + " is " +
                      (actual < expected ? "truncated" : "longer than its index entry") + ": " +
                      std::to_string(actual) + " bytes, index says " + std::to_string(tokens) +
                      " tokens (" + std::to_string(expected) + " bytes)");
    s.shards_.push_back({name, s.size_, tokens, std::move(map)});
    s.size_ += tokens;
  }
  const int64_t total = require_int(splits.at(split), "tokens", 0, kMaxSplitTokens, split_where);
  if (total != s.size_)
    throw DataError(split_where + ": \"tokens\" is " + std::to_string(total) +
                    " but its shards hold " + std::to_string(s.size_));
  return s;
}

void TokenSplit::read(int64_t start, int64_t count, int64_t* out) const {
  if (start < 0 || count < 0 || start > size_ - count)
    throw DataError(where_ + ": cannot read tokens [" + std::to_string(start) + ", " +
                    std::to_string(start + count) + ") of a split of " + std::to_string(size_) +
                    " tokens");
  if (count == 0) return;
  // The last shard starting at or before `start`.
  auto shard = std::upper_bound(shards_.begin(), shards_.end(), start,
                                [](int64_t pos, const Shard& s) { return pos < s.first; }) - 1;
  int64_t pos = start;
  while (count > 0) {
    const int64_t offset = pos - shard->first;
    const int64_t n = std::min(count, shard->tokens - offset);
    const unsigned char* p = shard->map.data() + offset * element_bytes_;
    for (int64_t i = 0; i < n; ++i, p += element_bytes_) {
      int64_t id = 0;
      for (int64_t b = 0; b < element_bytes_; ++b) id |= int64_t{p[b]} << (8 * b);
      if (id >= vocab_size_)
        throw DataError(where_ + ": shard " + shard->file + " holds token id " +
                        std::to_string(id) + " at token " + std::to_string(offset + i) +
                        ", not below vocab_size " + std::to_string(vocab_size_));
      out[i] = id;
    }
    out += n;
    pos += n;
    count -= n;
    ++shard;
  }
}

}  // namespace crsm::data
