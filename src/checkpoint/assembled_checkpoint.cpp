#include "checkpoint/assembled_checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/new_directories.h"
#include "checkpoint/run_dir.h"
#include "checkpoint/store.h"
#include "checkpoint/training_checkpoint.h"
#include "checkpoint/sha256.h"

namespace crsm::checkpoint {
namespace {

namespace fs = std::filesystem;

// Copies in pieces through an AtomicFile: checkpoints can be larger than memory.
void copy_file_synced(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw FileError(from.string() + ": cannot be read");
  base::AtomicFile out(to.string());
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) out.write(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw FileError(from.string() + ": read failed");
  out.commit();
}

}  // namespace

std::string backbone_sha256(const std::string& checkpoint_dir) {
  const auto manifest = checkpoint::read_manifest(checkpoint_dir);
  const auto files = manifest.value("files", nlohmann::json::object());
  const auto sha_of = [&](const std::string& file) {
    if (!files.contains(file) || !files[file].is_object() || !files[file].value("sha256", nlohmann::json()).is_string())
      throw checkpoint::CheckpointError(checkpoint_dir + "/manifest.json: no SHA-256 for " + file);
    return files[file]["sha256"].get<std::string>();
  };
  const auto shards = manifest.value("parameter_shards", nlohmann::json());
  if (!shards.is_object()) return sha_of(kModelFile);
  // Zero stage 3: the weights are the rank files' pieces; their digests, in file order,
  // identify them.
  checkpoint::Sha256 digest;
  for (const auto& [file, pieces] : shards.items()) {
    const std::string line = file + " " + sha_of(file) + "\n";
    digest.update(line.data(), line.size());
  }
  return digest.hex_digest();
}

std::string assemble_checkpoint(const std::string& backbone_dir, const std::string& dynamics_file,
                                const std::string& output_dir, const std::function<void()>& safe_point) {
  const std::string sha = backbone_sha256(backbone_dir);
  const SavedDynamics dynamics = load_dynamics(dynamics_file);
  if (dynamics.backbone_sha256 != sha)
    throw UsageError("--dynamics " + dynamics_file + " was distilled from the backbone with SHA-256 " +
                     dynamics.backbone_sha256 + ", but --backbone " + backbone_dir + " has " + sha +
                     ": distill it from this backbone");
  const std::string root = RunDir(output_dir).checkpoints();
  if (checkpoint::holds_checkpoints(root))
    throw UsageError("--output " + output_dir + " already holds checkpoints: choose another directory");
  auto manifest = checkpoint::read_manifest(backbone_dir);
  base::NewDirectories created;
  created.create(root);
  checkpoint::remove_unfinished_saves(root);
  const std::string tmp = checkpoint::begin_checkpoint(root, manifest.value("step", int64_t{0}));
  struct RemoveUnfinished {
    const std::string& dir;
    ~RemoveUnfinished() {
      std::error_code ec;
      fs::remove_all(dir, ec);  // nothing once committed: the directory was renamed
    }
  } unfinished{tmp};
  const auto copy = [&](const fs::path& from, const std::string& name) {
    if (safe_point) safe_point();
    copy_file_synced(from, fs::path(tmp) / name);
  };
  for (const auto& entry : fs::directory_iterator(backbone_dir))
    if (entry.is_regular_file() && entry.path().filename() != kManifestFile)
      copy(entry.path(), entry.path().filename().string());
  copy(dynamics_file, kDynamicsFileName);
  if (safe_point) safe_point();
  const auto& cfg = dynamics.model->config();
  manifest.erase("files");
  manifest["dynamics"] = {{"file", kDynamicsFileName},
                          {"arch", model::to_string(cfg.arch)},
                          {"hidden", cfg.resolved_hidden()},
                          {"backbone_sha256", sha},
                          {"source", fs::absolute(dynamics_file).string()}};
  const std::string committed = checkpoint::commit_checkpoint(root, tmp, manifest, /*keep_last=*/0);
  created.keep();
  return committed;
}

std::optional<SavedDynamics> load_checkpoint_dynamics(const std::string& checkpoint_dir) {
  const auto manifest = checkpoint::read_manifest(checkpoint_dir);
  if (!manifest.contains("dynamics")) return std::nullopt;
  const std::string path = (fs::path(checkpoint_dir) / kDynamicsFileName).string();
  SavedDynamics saved = load_dynamics(path);
  if (saved.backbone_sha256 != backbone_sha256(checkpoint_dir))
    throw checkpoint::CheckpointError(path + " belongs to the backbone with SHA-256 " + saved.backbone_sha256 +
                                ", not to this checkpoint's backbone");
  return saved;
}

}  // namespace crsm::checkpoint
