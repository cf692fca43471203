#include "data/prepare.h"

#include <cmath>
#include <filesystem>
#include <fstream>
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

struct Input {
  std::string path;
  MappedFile text;
  size_t train_bytes = 0;  // the rest is validation
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;

  std::string_view train() const {
    return {reinterpret_cast<const char*>(text.data()), train_bytes};
  }
  std::string_view val() const {
    return {reinterpret_cast<const char*>(text.data()) + train_bytes, text.size() - train_bytes};
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

// Maps the input and places the train/val cut: the last val_fraction of its bytes,
// moved back to the start of a UTF-8 character.
Input open_input(const std::string& path, double val_fraction) {
  Input in{path, MappedFile(path)};
  const size_t n = in.text.size();
  if (n == 0) throw DataError(path + ": input is empty (expected text)");
  size_t cut = static_cast<size_t>(std::floor(static_cast<double>(n) * (1 - val_fraction)));
  while (cut > 0 && cut < n && (in.text.data()[cut] & 0xC0) == 0x80) --cut;
  const std::string sizes = " (" + std::to_string(n) + " bytes, val_fraction " +
                            std::to_string(val_fraction) + ")";
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
      out.write(inputs[i].train().data(), static_cast<std::streamsize>(inputs[i].train_bytes));
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

PrepareSummary prepare_corpus(const PrepareOptions& opt) {
  check_options(opt);
  const fs::path out_dir = fresh_output(opt.output_dir, opt.output_dir + ": already exists and is not empty; prepare "
                                                                          "never overwrites (choose a new output directory)");

  // Every input is checked before any slow work (tokenizer training) starts.
  std::vector<Input> inputs;
  for (const auto& path : opt.inputs) inputs.push_back(open_input(path, opt.val_fraction));

  StagedOutput staging(out_dir);
  const auto tok = make_tokenizer(opt, inputs, staging.path());
  const TokenDtype dtype = dtype_for_vocab(tok->vocab_size());

  ShardWriter train(staging.path(), "train", dtype), val(staging.path(), "val", dtype);
  nlohmann::json input_list = nlohmann::json::array();
  PrepareSummary summary{0, 0, tok->vocab_size(), dtype_name(dtype)};
  for (auto& in : inputs) {
    in.train_tokens = encode_into(*tok, in.train(), train, opt.stop_requested);
    in.val_tokens = encode_into(*tok, in.val(), val, opt.stop_requested);
    summary.train_tokens += in.train_tokens;
    summary.val_tokens += in.val_tokens;
    input_list.push_back({{"path", in.path},
                          {"bytes", in.text.size()},
                          {"train_tokens", in.train_tokens},
                          {"val_tokens", in.val_tokens}});
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
