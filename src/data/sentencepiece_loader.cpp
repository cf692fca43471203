#include "data/sentencepiece_loader.h"

#include <dlfcn.h>

#include <filesystem>

#include "data/data_error.h"

namespace crsm::data {
namespace {

const SentencePieceLibrary* load_module() {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const std::vector<std::string> candidates = {
      (exe.parent_path() / ".." / "lib" / CRSM_SENTENCEPIECE_MODULE_NAME).string(),
      CRSM_SENTENCEPIECE_MODULE_PATH};
  std::string failures;
  for (const auto& path : candidates) {
    if (!fs::exists(path)) {
      failures += "\n  " + path + ": not found";
      continue;
    }
    // Local and deep-bound: see sentencepiece_module.h. Never closed.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!handle) {
      failures += "\n  " + path + ": " + ::dlerror();
      continue;
    }
    using Entry = const SentencePieceLibrary* (*)();
    if (auto entry = reinterpret_cast<Entry>(::dlsym(handle, kSentencePieceEntryPoint)))
      return entry();
    failures += "\n  " + path + ": has no " + kSentencePieceEntryPoint;
  }
  throw DataError("cannot load the SentencePiece module (build the crsm_sentencepiece target):" +
                  failures);
}

}  // namespace

const SentencePieceLibrary& sentencepiece_library() {
  static const SentencePieceLibrary* library = load_module();
  return *library;
}

}  // namespace crsm::data
