#pragma once

// `crsm_train prepare`: tokenizes text files once into token shards (shard_format.h)
// with an explicit train/val split, plus the tokenizer, in one new directory.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"

namespace crsm::data {

// What an input file holds: plain text (one document, its last val_fraction of bytes
// validation), or JSON Lines (one document per line, under a key; its last val_fraction
// of documents validation), as Megatron's preprocessing and most public corpora ship.
enum class InputFormat { kText, kJsonl };
InputFormat parse_input_format(const std::string& word);  // "text" | "jsonl"

struct PrepareOptions {
  std::vector<std::string> inputs;  // text or JSONL files
  InputFormat format = InputFormat::kText;
  std::string json_key = "text";    // kJsonl: the field of each line's object that holds its text
  std::string tokenizer = "byte";   // "byte" | "sentencepiece" | path to an existing .model file
  int64_t vocab_size = 0;           // required for sentencepiece training; for byte 0 or 258
  double val_fraction = 0.1;        // last fraction of EACH input (by bytes) is validation
  std::string output_dir;
  // Asked between chunks of text: when it returns true (a preemption signal), prepare
  // removes what it staged and throws PrepareStopped, leaving output_dir as it was.
  std::function<bool()> stop_requested;
};

class PrepareStopped : public Error {
 public:
  using Error::Error;
};

struct PrepareSummary {
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t vocab_size = 0;
  std::string dtype;  // "uint16" or "uint32"
};

// Splits each input at a UTF-8 boundary, tokenizes its train and val parts separately
// (each followed by eos, a document boundary), and writes train_NNN.bin, val_NNN.bin,
// the tokenizer and index.json. A SentencePiece tokenizer is trained on the train parts
// only. Everything is written to a temporary sibling of output_dir that is renamed into
// place at the end, so output_dir is never left half-written; an output_dir that exists
// and is not empty is refused. Every bad input or option throws DataError naming it.
PrepareSummary prepare_corpus(const PrepareOptions& opt);

}  // namespace crsm::data
