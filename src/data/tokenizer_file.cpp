#include "data/tokenizer_file.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "data/data_error.h"
#include "base/atomic_file.h"
#include "base/file_read.h"
#include "data/tokenizer.h"

namespace crsm::data {

namespace fs = std::filesystem;

void write_tokenizer_file(const std::string& dir, const std::string& kind, int64_t vocab_size,
                          const std::string& model_file) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw DataError(dir + ": cannot create the tokenizer directory (" + ec.message() + ")");
  nlohmann::json j = {{"kind", kind}, {"vocab_size", vocab_size}};
  if (!model_file.empty()) j["model_file"] = model_file;
  base::write_file_atomically((fs::path(dir) / kTokenizerFile).string(), j.dump(2) + "\n");
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  const std::string path = (fs::path(dir) / kTokenizerFile).string();
  const nlohmann::json j = base::read_json_file(path);
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(key))
      throw DataError(path + ": missing key \"" + key + "\"");
    return j.at(key);
  };
  const nlohmann::json& kind = field("kind");
  const nlohmann::json& vocab = field("vocab_size");
  if (!vocab.is_number_integer())
    throw DataError(path + ": \"vocab_size\" must be an integer, got " + vocab.dump());

  std::unique_ptr<Tokenizer> tok;
  if (kind == "byte") {
    tok = make_byte_tokenizer();
  } else if (kind == "sentencepiece") {
    const nlohmann::json& model = field("model_file");
    if (!model.is_string() || model.get<std::string>().empty())
      throw DataError(path + ": \"model_file\" must be a file name, got " + model.dump());
    tok = load_sentencepiece_model((fs::path(dir) / model.get<std::string>()).string());
  } else {
    throw DataError(path + ": \"kind\" must be \"byte\" or \"sentencepiece\", got " + kind.dump());
  }
  check_vocab_matches(*tok, vocab.get<int64_t>(), path);
  return tok;
}

}  // namespace crsm::data
