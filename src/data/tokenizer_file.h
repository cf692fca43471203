#pragma once

// The tokenizer.json descriptor that Tokenizer::save writes and load_tokenizer reads.

#include <cstdint>
#include <string>

namespace crsm::data {

inline constexpr const char* kTokenizerFile = "tokenizer.json";
inline constexpr const char* kSentencePieceModelFile = "tokenizer.model";

// Creates dir and writes dir/tokenizer.json; model_file is omitted when empty.
void write_tokenizer_file(const std::string& dir, const std::string& kind, int64_t vocab_size,
                          const std::string& model_file);

}  // namespace crsm::data
