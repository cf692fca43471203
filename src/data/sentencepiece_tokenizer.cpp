#include "data/sentencepiece_tokenizer.h"

#include <filesystem>

#include "data/data_error.h"
#include "base/protobuf_wire.h"
#include "base/atomic_file.h"
#include "base/file_read.h"
#include "data/sentencepiece_loader.h"
#include "data/tokenizer_file.h"

namespace crsm::data {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> sp, std::string source)
      : sp_(std::move(sp)), source_(std::move(source)) {}

  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    std::string error;
    if (!sp_->encode(text, &ids, &error))
      throw DataError(source_ + ": SentencePiece cannot encode the text (" + error + ")");
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> pieces;
    pieces.reserve(ids.size());
    for (const int32_t id : ids) {
      if (id < 0 || id >= sp_->piece_size())
        throw DataError(source_ + ": cannot decode id " + std::to_string(id) + " (expected 0.." +
                        std::to_string(sp_->piece_size() - 1) + ")");
      // SentencePiece renders <unk> as " ⁇ "; specials are not text.
      if (!sp_->is_special(id)) pieces.push_back(id);
    }
    std::string text, error;
    if (!sp_->decode(pieces, &text, &error))
      throw DataError(source_ + ": SentencePiece cannot decode (" + error + ")");
    return text;
  }

  int64_t vocab_size() const override { return sp_->piece_size(); }
  std::string kind() const override { return "sentencepiece"; }
  int32_t bos_id() const override { return sp_->bos_id(); }
  int32_t eos_id() const override { return sp_->eos_id(); }

  void save(const std::string& dir) const override {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw DataError(dir + ": cannot create the tokenizer directory (" + ec.message() + ")");
    base::write_file_atomically((std::filesystem::path(dir) / kSentencePieceModelFile).string(),
                          sp_->serialized());
    write_tokenizer_file(dir, kind(), vocab_size(), kSentencePieceModelFile);
  }

 private:
  std::unique_ptr<SentencePieceModel> sp_;
  std::string source_;  // names the model in error messages
};

// The messages inside sentencepiece_model.proto's ModelProto: pieces (1), trainer_spec
// (2), normalizer_spec (3), self_test_data (4, holding samples, 1) and
// denormalizer_spec (5). Their other length-delimited fields are strings.
const base::WireSchema& model_proto_schema() {
  static const base::WireSchema leaf;
  static const base::WireSchema self_test_data{{{1, &leaf}}};
  static const base::WireSchema model{{{1, &leaf}, {2, &leaf}, {3, &leaf}, {4, &self_test_data}, {5, &leaf}}};
  return model;
}

}  // namespace

std::unique_ptr<Tokenizer> sentencepiece_from_bytes(const std::string& model_bytes,
                                                    const std::string& source) {
  const std::string damage = base::wire_format_problem(model_bytes, model_proto_schema());
  if (!damage.empty()) throw DataError(source + ": not a SentencePiece model (" + damage + ")");
  std::string error;
  auto sp = sentencepiece_library().load(model_bytes, &error);
  if (!sp) throw DataError(source + ": not a SentencePiece model (" + error + ")");
  // Documents are separated by eos in the token shards; generation starts from bos.
  if (sp->bos_id() < 0 || sp->eos_id() < 0)
    throw DataError(source + ": the SentencePiece model must define bos and eos pieces (bos_id " +
                    std::to_string(sp->bos_id()) + ", eos_id " + std::to_string(sp->eos_id()) +
                    ")");
  return std::make_unique<SentencePieceTokenizer>(std::move(sp), source);
}

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& model_path) {
  return sentencepiece_from_bytes(base::read_file(model_path), model_path);
}

}  // namespace crsm::data
