#pragma once

#include "data/sentencepiece_module.h"

namespace crsm::data {

// The crsm_sentencepiece module, loaded on first use: from ../lib next to the running
// program, else from where the build put it. DataError naming the paths tried if
// neither loads.
const SentencePieceLibrary& sentencepiece_library();

}  // namespace crsm::data
