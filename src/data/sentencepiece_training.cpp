#include <filesystem>
#include <unordered_map>

#include "data/data_error.h"
#include "base/file_read.h"
#include "data/sentencepiece_loader.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/temp_dir.h"

namespace crsm::data {
namespace {

std::string joined(const std::vector<std::string>& files) {
  std::string s;
  for (const auto& f : files) s += (s.empty() ? "" : ", ") + f;
  return s;
}

}  // namespace

std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& text_files,
                                               int64_t vocab_size,
                                               const std::string& model_type,
                                               const std::vector<std::string>& sources) {
  if (text_files.empty()) throw DataError("SentencePiece training: no text files given");
  if (model_type != "bpe" && model_type != "unigram")
    throw DataError("SentencePiece training: model_type must be \"bpe\" or \"unigram\", got \"" +
                    model_type + "\"");
  if (vocab_size <= 0)
    throw DataError("SentencePiece training: vocab_size must be positive, got " +
                    std::to_string(vocab_size));
  for (const auto& f : text_files)
    if (!std::filesystem::is_regular_file(f))
      throw DataError(f + ": not found (expected a text file to train SentencePiece on)");

  TempDir out(std::filesystem::temp_directory_path().string(), "crsm_sentencepiece");
  const std::string prefix = (std::filesystem::path(out.path()) / "sp").string();
  const std::unordered_map<std::string, std::string> options = {
      {"model_prefix", prefix},
      {"model_type", model_type},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      // Identity normalization, no whitespace cleanup, no dummy prefix: exact round trip.
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"minloglevel", "1"},
  };
  const std::string what = "the SentencePiece " + model_type + " model with vocab_size " +
                           std::to_string(vocab_size) + " trained on " +
                           joined(sources.empty() ? text_files : sources);
  std::string error;
  if (!sentencepiece_library().train(text_files, options, &error))
    throw DataError("training " + what + " failed: " + error);
  return sentencepiece_from_bytes(base::read_file(prefix + ".model"), what);
}

}  // namespace crsm::data
