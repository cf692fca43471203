#include "data/tokenizer.h"

#include "data/data_error.h"

namespace crsm::data {

void check_vocab_matches(const Tokenizer& tok, int64_t model_vocab_size,
                         const std::string& what) {
  if (tok.vocab_size() == model_vocab_size) return;
  throw DataError(what + ": the model's vocab_size is " + std::to_string(model_vocab_size) +
                  " but the tokenizer (" + tok.kind() + ") has " +
                  std::to_string(tok.vocab_size()) + " tokens");
}

}  // namespace crsm::data
