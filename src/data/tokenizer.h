#pragma once

// Text <-> token ids. Two kinds: raw bytes (no training, 258 ids) and SentencePiece
// (BPE or unigram, trained here or loaded from a .model file). A tokenizer is saved
// next to every prepared corpus and run, and must agree with the model's vocab_size.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace crsm::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Never adds bos/eos: callers mark document boundaries themselves.
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Special ids (bos, eos, unk) decode to ""; an id outside the vocabulary throws.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string kind() const = 0;  // "byte" or "sentencepiece"
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  // Writes dir/tokenizer.json ({"kind", "vocab_size"} plus "model_file":
  // "tokenizer.model" for sentencepiece) and, for sentencepiece, that model file.
  // Creates dir if needed; each file is replaced only by a complete one.
  virtual void save(const std::string& dir) const = 0;
};

// Ids 0..255 are the bytes, 256 = <bos>, 257 = <eos>; vocab_size 258.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Trains a SentencePiece model ("bpe" or "unigram") of exactly vocab_size pieces on the
// lines of the given files, in-process. Normalization is off and byte fallback on, so
// decode(encode(s)) == s for any UTF-8 text. unk = 0, bos = 1, eos = 2. A vocab_size
// the corpus cannot support (too small for its characters plus the 256 byte pieces,
// or more pieces than it can yield) throws DataError with SentencePiece's reason.
// Messages name `sources` (default: the files themselves), for callers that train on
// temporary copies of the user's files.
std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& text_files,
                                               int64_t vocab_size,
                                               const std::string& model_type = "bpe",
                                               const std::vector<std::string>& sources = {});

// Loads a serialized SentencePiece model (a .model file); it must define bos and eos.
std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& model_path);

// Loads what Tokenizer::save wrote into dir (reads dir/tokenizer.json).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

// Throws DataError "<what>: the model's vocab_size is X but the tokenizer (<kind>) has
// Y tokens" unless they are equal.
void check_vocab_matches(const Tokenizer& tok, int64_t model_vocab_size, const std::string& what);

}  // namespace crsm::data
