#pragma once

#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace crsm::data {

// A tokenizer from a serialized SentencePiece model; `source` names it in error
// messages (a file, or what it was trained on).
std::unique_ptr<Tokenizer> sentencepiece_from_bytes(const std::string& model_bytes,
                                                    const std::string& source);

}  // namespace crsm::data
