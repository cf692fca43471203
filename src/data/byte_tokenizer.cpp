#include "data/data_error.h"
#include "data/tokenizer.h"
#include "data/tokenizer_file.h"

namespace crsm::data {
namespace {

constexpr int32_t kBos = 256;
constexpr int32_t kEos = 257;
constexpr int64_t kVocab = 258;

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string text;
    text.reserve(ids.size());
    for (const int32_t id : ids) {
      if (id < 0 || id >= kVocab)
        throw DataError("byte tokenizer: cannot decode id " + std::to_string(id) +
                        " (expected 0..257)");
      if (id < kBos) text.push_back(static_cast<char>(id));
    }
    return text;
  }

  int64_t vocab_size() const override { return kVocab; }
  std::string kind() const override { return "byte"; }
  int32_t bos_id() const override { return kBos; }
  int32_t eos_id() const override { return kEos; }

  void save(const std::string& dir) const override {
    write_tokenizer_file(dir, kind(), kVocab, "");
  }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace crsm::data
