// Built only into the crsm_sentencepiece module; see sentencepiece_module.h.

#include "data/sentencepiece_module.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>

namespace crsm::data {
namespace {

namespace spm = sentencepiece;

class Model final : public SentencePieceModel {
 public:
  explicit Model(std::unique_ptr<spm::SentencePieceProcessor> sp) : sp_(std::move(sp)) {}

  bool encode(const std::string& text, std::vector<int>* ids, std::string* error) const override {
    return check(sp_->Encode(text, ids), error);
  }
  bool decode(const std::vector<int>& ids, std::string* text, std::string* error) const override {
    return check(sp_->Decode(ids, text), error);
  }
  int piece_size() const override { return sp_->GetPieceSize(); }
  int bos_id() const override { return sp_->bos_id(); }
  int eos_id() const override { return sp_->eos_id(); }
  bool is_special(int id) const override { return sp_->IsControl(id) || sp_->IsUnknown(id); }
  std::string serialized() const override { return sp_->serialized_model_proto(); }

 private:
  static bool check(const spm::util::Status& status, std::string* error) {
    if (!status.ok()) *error = status.ToString();
    return status.ok();
  }

  std::unique_ptr<spm::SentencePieceProcessor> sp_;
};

// Feeds the trainer the lines of each file in turn. Reading the files here (rather
// than through SentencePiece's comma-separated --input) keeps any path usable.
class FileLines final : public spm::SentenceIterator {
 public:
  explicit FileLines(const std::vector<std::string>& files) : files_(files) { Next(); }

  bool done() const override { return done_; }
  const std::string& value() const override { return line_; }
  spm::util::Status status() const override { return status_; }

  void Next() override {
    while (!done_) {
      if (in_.is_open() && std::getline(in_, line_)) return;
      if (in_.is_open() && in_.bad()) return fail(files_[next_file_ - 1] + ": read error");
      in_.close();
      if (next_file_ == files_.size()) {
        done_ = true;
        return;
      }
      in_.clear();
      in_.open(files_[next_file_++], std::ios::binary);
      if (!in_) return fail(files_[next_file_ - 1] + ": cannot be opened");
    }
  }

 private:
  void fail(const std::string& message) {
    status_ = spm::util::Status(spm::util::StatusCode::kDataLoss, message);
    done_ = true;
  }

  const std::vector<std::string>& files_;
  size_t next_file_ = 0;
  std::ifstream in_;
  std::string line_;
  bool done_ = false;
  spm::util::Status status_;
};

class Library final : public SentencePieceLibrary {
 public:
  std::unique_ptr<SentencePieceModel> load(const std::string& model_bytes,
                                           std::string* error) const override {
    auto sp = std::make_unique<spm::SentencePieceProcessor>();
    const auto status = sp->LoadFromSerializedProto(model_bytes);
    if (!status.ok()) {
      *error = status.ToString();
      return nullptr;
    }
    return std::make_unique<Model>(std::move(sp));
  }

  bool train(const std::vector<std::string>& files,
             const std::unordered_map<std::string, std::string>& options,
             std::string* error) const override {
    FileLines lines(files);
    const auto status = spm::SentencePieceTrainer::Train(options, &lines);
    if (!status.ok()) *error = status.ToString();
    return status.ok();
  }
};

}  // namespace
}  // namespace crsm::data

extern "C" __attribute__((visibility("default"))) const crsm::data::SentencePieceLibrary*
crsm_sentencepiece_library() {
  static const crsm::data::Library library;
  return &library;
}
