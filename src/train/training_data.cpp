#include "train/training_data.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "checkpoint/run_dir.h"
#include "base/error.h"
#include "base/file_read.h"
#include "data/prepare.h"
#include "data/shard_format.h"
#include "dist/runtime.h"

namespace crsm::train {
namespace {

namespace fs = std::filesystem;

// Whether `dir` was prepared from exactly this file.
bool prepared_from(const fs::path& dir, const std::string& text_file) {
  nlohmann::json index;
  try {
    index = base::read_json_file((dir / data::kIndexFile).string());
  } catch (const FileError&) {
    return false;
  }
  if (!index.is_object() || !index.contains("inputs") || !index["inputs"].is_array() || index["inputs"].size() != 1)
    return false;
  const auto& input = index["inputs"][0];
  return input.is_object() && input.contains("path") && input["path"] == fs::absolute(text_file).string() &&
         input.contains("bytes") && input["bytes"] == fs::file_size(text_file);
}

std::string prepare_once(const std::string& data, const std::string& run_dir) {
  if (fs::is_directory(data)) return data;
  if (!fs::is_regular_file(data)) throw UsageError("--data " + data + ": no such prepared directory or text file");
  const fs::path dir = checkpoint::RunDir(run_dir).data();
  if (fs::exists(dir)) {
    if (prepared_from(dir, data)) return dir.string();
    throw UsageError(dir.string() + " holds data prepared from another file than " + data +
                     "; remove it or pass a prepared directory with --data");
  }
  data::PrepareOptions prep;
  prep.inputs = {fs::absolute(data).string()};
  prep.output_dir = dir.string();
  prep.stop_requested = dist::preemption_signalled;
  data::PrepareSummary summary;
  try {
    summary = data::prepare_corpus(prep);
  } catch (const data::PrepareStopped&) {
    return "";
  }
  std::printf("prepare: %s -> %s (%lld train / %lld val tokens, byte tokenizer)\n", data.c_str(), dir.c_str(),
              static_cast<long long>(summary.train_tokens), static_cast<long long>(summary.val_tokens));
  return dir.string();
}

}  // namespace

std::string resolve_training_data(const std::string& data, const std::string& run_dir, dist::Communicator& comm) {
  // Rank 0 prepares a text corpus once; the others wait and then read what it wrote.
  return dist::run_on_root(comm, [&] { return prepare_once(data, run_dir); });
}

}  // namespace crsm::train
