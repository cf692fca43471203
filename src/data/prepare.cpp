#include "data/prepare.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

#include "data/data_error.h"
#include "base/atomic_file.h"
#include "data/mapped_file.h"
#include "data/shard_format.h"
#include "data/shard_writer.h"
#include "data/temp_dir.h"
#include "data/tokenizer.h"
#include "data/tokenizer_file.h"

namespace crsm::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kByteVocab = 258;
// Text handed to one encode() call, so a large corpus is never encoded as one string.
constexpr size_t kChunkBytes = size_t{1} << 20;

// An input file as documents, each encoded and ended with the end-of-sequence token:
// a text file is one document in each split (its train part, its val part), a JSONL
// file one per line, the last val_fraction of its documents validation.
struct Input {
  std::string path;
  MappedFile text;
  InputFormat format = InputFormat::kText;
  std::string json_key;
  size_t train_bytes = 0;        // kText: the rest is validation
  int64_t documents = 0;         // kJsonl
  int64_t train_documents = 0;   // kJsonl: the rest are validation
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;

  std::string_view bytes() const { return {reinterpret_cast<const char*>(text.data()), text.size()}; }

  // The documents of one split, in file order.
  void for_each_document(bool train, const std::function<void(std::string_view)>& take) const {
    if (format == InputFormat::kText) return take(train ? bytes().substr(0, train_bytes) : bytes().substr(train_bytes));
    int64_t index = 0;
    for_each_json_line([&](const std::string& document, int64_t) {
      if ((index++ < train_documents) == train) take(document);
    });
  }

  // Each non-blank line's text under json_key, with its line number. DataError naming
  // the file, the line and what is wrong.
  void for_each_json_line(const std::function<void(const std::string&, int64_t)>& take) const {
    const std::string_view all = bytes();
    int64_t number = 0;
    for (size_t pos = 0; pos < all.size();) {
      const size_t end = std::min(all.find('\n', pos), all.size());
      const std::string_view line = all.substr(pos, end - pos);
      pos = end + 1;
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      const std::string where = path + " line " + std::to_string(number);
      const auto object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!object.is_object()) throw DataError(where + ": expected a JSON object (JSON Lines: one per line)");
      const auto field = object.find(json_key);
      if (field == object.end() || !field->is_string())
        throw DataError(where + ": expected a string field \"" + json_key + "\" (--json-key)");
      take(field->get<std::string>(), number);
    }
  }
};

void check_options(const PrepareOptions& opt) {
  if (opt.inputs.empty()) throw DataError("prepare: no input files given");
  if (opt.output_dir.empty()) throw DataError("prepare: no output directory given");
  if (!(opt.val_fraction > 0 && opt.val_fraction < 1))
    throw DataError("prepare: val_fraction must be in (0, 1), got " +
                    std::to_string(opt.val_fraction));
  if (opt.tokenizer == "byte" && opt.vocab_size != 0 && opt.vocab_size != kByteVocab)
    throw DataError("prepare: the byte tokenizer has vocab_size 258, got vocab_size " +
                    std::to_string(opt.vocab_size) + " (give 0 or 258)");
  if (opt.tokenizer == "sentencepiece" && opt.vocab_size <= 0)
    throw DataError("prepare: training a sentencepiece tokenizer needs a vocab_size > 0, got " +
                    std::to_string(opt.vocab_size));
  if (opt.vocab_size < 0)
    throw DataError("prepare: vocab_size must be >= 0, got " + std::to_string(opt.vocab_size));
}

// Maps the input and places the train/val cut: a text file's last val_fraction of its
// bytes, moved back to the start of a UTF-8 character; a JSONL file's last val_fraction
// of its documents, every line checked first.
Input open_input(const std::string& path, const PrepareOptions& opt) {
  Input in{path, MappedFile(path), opt.format, opt.json_key};
  const size_t n = in.text.size();
  if (n == 0) throw DataError(path + ": input is empty (expected text)");
  const double keep = 1 - opt.val_fraction;
  const std::string fraction = "val_fraction " + std::to_string(opt.val_fraction);
  if (opt.format == InputFormat::kJsonl) {
    in.for_each_json_line([&](const std::string&, int64_t) { ++in.documents; });
    in.train_documents = static_cast<int64_t>(std::floor(static_cast<double>(in.documents) * keep));
    const std::string sizes = " (" + std::to_string(in.documents) + " documents, " + fraction + ")";
    if (in.documents == 0) throw DataError(path + ": holds no document (every line is blank)");
    if (in.train_documents == 0) throw DataError(path + ": its train part would be empty" + sizes);
    if (in.train_documents == in.documents) throw DataError(path + ": its validation part would be empty" + sizes);
    return in;
  }
  size_t cut = static_cast<size_t>(std::floor(static_cast<double>(n) * keep));
  while (cut > 0 && cut < n && (in.text.data()[cut] & 0xC0) == 0x80) --cut;
  const std::string sizes = " (" + std::to_string(n) + " bytes, " + fraction + ")";
  if (cut == 0) throw DataError(path + ": its train part would be empty" + sizes);
  if (cut == n) throw DataError(path + ": its validation part would be empty" + sizes);
  in.train_bytes = cut;
  return in;
}

std::unique_ptr<Tokenizer> make_tokenizer(const PrepareOptions& opt,
                                          const std::vector<Input>& inputs,
                                          const std::string& scratch_dir) {
  if (opt.tokenizer == "byte") return make_byte_tokenizer();
  if (opt.tokenizer == "sentencepiece") {
    // Trained on the train parts only, so validation text never shapes the vocabulary.
    std::vector<std::string> parts;
    for (size_t i = 0; i < inputs.size(); ++i) {
      parts.push_back((fs::path(scratch_dir) / ("train_part_" + std::to_string(i) + ".txt")).string());
      std::ofstream out(parts.back(), std::ios::binary);
      inputs[i].for_each_document(true, [&](std::string_view document) {
        out.write(document.data(), static_cast<std::streamsize>(document.size()));
        out.put('\n');
      });
      out.close();
      if (!out) throw DataError(parts.back() + ": cannot be written");
    }
    std::vector<std::string> sources;
    for (const auto& in : inputs) sources.push_back(in.path + " (its train part)");
    auto tok = train_sentencepiece(parts, opt.vocab_size, "bpe", sources);
    for (const auto& p : parts) fs::remove(p);
    return tok;
  }
  if (!fs::is_regular_file(opt.tokenizer))
    throw DataError("prepare: tokenizer must be \"byte\", \"sentencepiece\" or an existing "
                    "SentencePiece .model file; " + opt.tokenizer + " is none of these");
  auto tok = load_sentencepiece_model(opt.tokenizer);
  if (opt.vocab_size != 0) check_vocab_matches(*tok, opt.vocab_size, opt.tokenizer);
  return tok;
}

// Encodes text in chunks of about kChunkBytes that end just after a newline. No piece
// of the byte tokenizer or of a SentencePiece model trained here (it trains line by
// line) spans a newline, so the ids equal those of a single encode() call.
int64_t encode_into(const Tokenizer& tok, std::string_view text, ShardWriter& out,
                    const std::function<bool()>& stop_requested) {
  int64_t tokens = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (stop_requested && stop_requested()) throw PrepareStopped("prepare: stopped by a signal");
    size_t end = text.size();
    if (end - pos > kChunkBytes) {
      const size_t before = text.rfind('\n', pos + kChunkBytes - 1);
      const size_t after = text.find('\n', pos + kChunkBytes);
      if (before != std::string_view::npos && before >= pos)
        end = before + 1;
      else if (after != std::string_view::npos)
        end = after + 1;
    }
    const auto ids = tok.encode(std::string(text.substr(pos, end - pos)));
    out.write(ids);
    tokens += static_cast<int64_t>(ids.size());
    pos = end;
  }
  out.write({tok.eos_id()});
  return tokens + 1;
}

nlohmann::json split_json(const std::vector<ShardInfo>& shards) {
  nlohmann::json list = nlohmann::json::array();
  int64_t total = 0;
  for (const auto& s : shards) {
    list.push_back({{"file", s.file}, {"tokens", s.tokens}});
    total += s.tokens;
  }
  return {{"tokens", total}, {"shards", list}};
}

}  // namespace

InputFormat parse_input_format(const std::string& word) {
  if (word == "text") return InputFormat::kText;
  if (word == "jsonl") return InputFormat::kJsonl;
  throw DataError("input format must be text or jsonl, got '" + word + "'");
}

PrepareSummary prepare_corpus(const PrepareOptions& opt) {
  check_options(opt);
  const fs::path out_dir = fresh_output(opt.output_dir, opt.output_dir + ": already exists and is not empty; prepare "
                                                                          "never overwrites (choose a new output directory)");

  // Every input is checked before any slow work (tokenizer training) starts.
  std::vector<Input> inputs;
  for (const auto& path : opt.inputs) inputs.push_back(open_input(path, opt));

  StagedOutput staging(out_dir);
  const auto tok = make_tokenizer(opt, inputs, staging.path());
  const TokenDtype dtype = dtype_for_vocab(tok->vocab_size());

  ShardWriter train(staging.path(), "train", dtype), val(staging.path(), "val", dtype);
  nlohmann::json input_list = nlohmann::json::array();
  PrepareSummary summary{0, 0, tok->vocab_size(), dtype_name(dtype)};
  for (auto& in : inputs) {
    in.for_each_document(true, [&](std::string_view d) { in.train_tokens += encode_into(*tok, d, train, opt.stop_requested); });
    in.for_each_document(false, [&](std::string_view d) { in.val_tokens += encode_into(*tok, d, val, opt.stop_requested); });
    summary.train_tokens += in.train_tokens;
    summary.val_tokens += in.val_tokens;
    input_list.push_back({{"path", in.path},
                          {"bytes", in.text.size()},
                          {"train_tokens", in.train_tokens},
                          {"val_tokens", in.val_tokens}});
    if (in.format == InputFormat::kJsonl) {
      input_list.back()["documents"] = in.documents;
      input_list.back()["val_documents"] = in.documents - in.train_documents;
    }
  }

  tok->save(staging.path());
  const nlohmann::json index = {
      {"format_version", kIndexFormatVersion},
      {"dtype", summary.dtype},
      {"vocab_size", summary.vocab_size},
      {"tokenizer", kTokenizerFile},
      {"inputs", input_list},
      {"splits", {{"train", split_json(train.finish())}, {"val", split_json(val.finish())}}}};
  base::write_file_atomically((fs::path(staging.path()) / kIndexFile).string(), index.dump(2) + "\n");

  staging.publish(opt.output_dir);
  return summary;
}

}  // namespace crsm::data
