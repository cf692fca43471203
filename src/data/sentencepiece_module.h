#pragma once

// The boundary to libsentencepiece, which lives in its own module (built from
// sentencepiece_module.cpp, loaded by sentencepiece_loader.h) instead of being linked
// into our programs. Debian's libsentencepiece carries a private protobuf-lite 3.14 and
// exports its symbols; LibTorch uses the system libprotobuf 3.21. Linked together,
// whichever the dynamic linker finds first serves both, and the process crashes during
// static initialisation. Loaded with RTLD_LOCAL | RTLD_DEEPBIND, each keeps its own.
// Only standard types and these interfaces cross the boundary; errors come back as text.

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace crsm::data {

class SentencePieceModel {
 public:
  virtual ~SentencePieceModel() = default;
  virtual bool encode(const std::string& text, std::vector<int>* ids, std::string* error) const = 0;
  virtual bool decode(const std::vector<int>& ids, std::string* text, std::string* error) const = 0;
  virtual int piece_size() const = 0;
  virtual int bos_id() const = 0;  // -1 when the model has none
  virtual int eos_id() const = 0;
  virtual bool is_special(int id) const = 0;  // control or unknown
  virtual std::string serialized() const = 0;
};

class SentencePieceLibrary {
 public:
  // Null with *error set if the bytes are not a SentencePiece model.
  virtual std::unique_ptr<SentencePieceModel> load(const std::string& model_bytes,
                                                   std::string* error) const = 0;
  // Trains on the lines of `files` with SentencePieceTrainer's key=value `options`
  // (which name the output via model_prefix); false with *error set on failure.
  virtual bool train(const std::vector<std::string>& files,
                     const std::unordered_map<std::string, std::string>& options,
                     std::string* error) const = 0;

 protected:
  ~SentencePieceLibrary() = default;
};

// The module's one exported symbol: extern "C" const SentencePieceLibrary* <this>().
inline constexpr const char* kSentencePieceEntryPoint = "crsm_sentencepiece_library";

}  // namespace crsm::data
