#pragma once

// A prepared corpus (crsm_train prepare) opened as a whole: its tokenizer and both
// splits, checked to agree with each other before anything trains on them.

#include <memory>
#include <string>

#include "data/token_shards.h"
#include "data/tokenizer.h"

namespace crsm::data {

struct PreparedCorpus {
  std::unique_ptr<Tokenizer> tokenizer;
  TokenSplit train;
  TokenSplit val;

  // DataError (or FileError) naming the file and field when a part is missing or
  // damaged, or when index.json's vocab_size is not the tokenizer's.
  static PreparedCorpus open(const std::string& dir);
};

}  // namespace crsm::data
