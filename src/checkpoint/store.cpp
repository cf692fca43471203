#include "checkpoint/store.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/file_read.h"
#include "checkpoint/run_dir.h"
#include "checkpoint/sha256.h"

namespace crsm::checkpoint {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kFormatVersion = 2;  // 2: optimizer state in per-rank pieces
constexpr const char* kPrefix = "step_";
constexpr const char* kLatest = "latest";

// Step number of a final checkpoint directory name, or -1 for anything else.
int64_t step_of(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::string(kPrefix).size());
  // At most 18 digits: any step fits int64.
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoll(digits);
}

// Final checkpoint directories under root, newest first.
std::vector<fs::path> checkpoints_newest_first(const fs::path& root) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

// What `latest` names, if anything.
std::optional<fs::path> latest_of(const fs::path& root) {
  std::ifstream in(root / kLatest);
  std::string name;
  if (!(in >> name) || step_of(name) < 0) return std::nullopt;
  return root / name;
}

// Saving a step that already exists moves the old copy aside as <name>.replaced before
// renaming the new one into place; a crash between the two renames leaves only the
// aside copy. It is complete, so it is put back.
void recover_replaced(const fs::path& root, std::vector<std::string>* notes) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string suffix = ".replaced";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const fs::path original = root / name.substr(0, name.size() - suffix.size());
    if (fs::exists(original) || step_of(original.filename().string()) < 0) continue;
    fs::rename(entry.path(), original);
    if (notes) notes->push_back("restored " + original.string() + " from an interrupted re-save");
  }
}

// The files, of those named, whose SHA-256 share `share` of `shares` checks: largest
// first, each to the share with the fewest bytes so far (greedy, so close to even
// rather than optimal).
std::vector<std::string> files_hashed_by(std::vector<std::pair<std::string, uint64_t>> files, int share,
                                         int shares) {
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  std::vector<uint64_t> load(static_cast<size_t>(std::max(1, shares)), 0);
  std::vector<std::string> mine;
  for (const auto& [name, bytes] : files) {
    const auto lightest = std::min_element(load.begin(), load.end()) - load.begin();
    load[static_cast<size_t>(lightest)] += bytes;
    if (lightest == share) mine.push_back(name);
  }
  return mine;
}

// `latest` first: after a resume from an older checkpoint it names the live branch,
// while a higher step number may belong to the abandoned one. Then by step.
std::optional<std::string> newest_verified(const fs::path& root, std::vector<std::string>* skipped,
                                           const CheckpointVerifier& verify) {
  recover_replaced(root, skipped);
  const auto latest = latest_of(root);
  if (latest && fs::is_directory(*latest)) {
    const std::string problem = verify(latest->string());
    if (problem.empty()) return latest->string();
    if (skipped) skipped->push_back("skipping damaged checkpoint " + latest->string() + ": " + problem);
  }
  for (const auto& dir : checkpoints_newest_first(root)) {
    if (latest && dir == *latest) continue;
    const std::string problem = verify(dir.string());
    if (problem.empty()) return dir.string();
    if (skipped) skipped->push_back("skipping damaged checkpoint " + dir.string() + ": " + problem);
  }
  return std::nullopt;
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

bool looks_like_checkpoint(const std::string& path) {
  std::error_code ec;
  return fs::exists(fs::path(path) / kManifestFile, ec) || step_of(fs::path(path).filename().string()) >= 0;
}

bool holds_checkpoints(const std::string& root) { return !checkpoints_newest_first(root).empty(); }

std::string begin_checkpoint(const std::string& root, int64_t step) {
  const fs::path tmp = fs::path(root) / (checkpoint_name(step) + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  return tmp.string();
}

std::vector<std::string> remove_unfinished_saves(const std::string& root) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string suffix = ".tmp";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
        step_of(name.substr(0, name.size() - suffix.size())) < 0 || !entry.is_directory())
      continue;
    fs::remove_all(entry.path());
    removed.push_back(name);
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

FileDigest digest_file(const std::string& path) {
  return {static_cast<uint64_t>(fs::file_size(path)), sha256_file(path)};
}

std::string commit_checkpoint(const std::string& root, const std::string& tmp_dir, json manifest,
                              int keep_last, const std::map<std::string, FileDigest>& known) {
  json files = json::object();
  for (const auto& entry : fs::directory_iterator(tmp_dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    if (name == kManifestFile) continue;
    const auto it = known.find(name);
    const FileDigest d = it != known.end() ? it->second : digest_file(entry.path().string());
    files[name] = {{"bytes", d.bytes}, {"sha256", d.sha256}};
  }
  manifest["format_version"] = kFormatVersion;
  manifest["files"] = files;
  base::write_file_atomically((fs::path(tmp_dir) / kManifestFile).string(), manifest.dump(2) + "\n");

  std::string name = fs::path(tmp_dir).filename().string();
  name = name.substr(0, name.size() - 4);  // drop ".tmp"
  const fs::path final_dir = fs::path(root) / name;
  if (fs::exists(final_dir)) {
    // Saving a step again (a resumed run): the new copy replaces the old only once complete.
    const fs::path replaced = final_dir.string() + ".replaced";
    fs::remove_all(replaced);
    fs::rename(final_dir, replaced);
    fs::rename(tmp_dir, final_dir);
    fs::remove_all(replaced);
  } else {
    fs::rename(tmp_dir, final_dir);
  }
  base::sync_directory(root);
  base::write_file_atomically((fs::path(root) / kLatest).string(), name + "\n");

  if (keep_last > 0) {
    // The checkpoint just written always stays, even when higher steps from another
    // branch of the run (a resume from an older checkpoint) outrank it.
    int kept = 1;
    for (const auto& dir : checkpoints_newest_first(root)) {
      if (dir == final_dir) continue;
      if (kept < keep_last)
        ++kept;
      else
        fs::remove_all(dir);
    }
  }
  return final_dir.string();
}

json read_manifest(const std::string& dir) {
  const fs::path path = fs::path(dir) / kManifestFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw CheckpointError(path.string() + ": missing (not a complete checkpoint)");
  try {
    return base::read_json_file(path.string());
  } catch (const FileError& e) {
    throw CheckpointError(e.what());
  }
}

std::string checkpoint_digest(const std::string& dir) {
  const json files = read_manifest(dir).value("files", json::object());
  Sha256 digest;
  // nlohmann's objects iterate in key order: the digest does not depend on how it was written.
  for (const auto& [name, file] : files.items()) {
    const std::string line = name + " " + file.value("sha256", "") + "\n";
    digest.update(line.data(), line.size());
  }
  return digest.hex_digest();
}

namespace {

std::string find_damage(const std::string& dir, int share, int shares) {
  json manifest;
  try {
    manifest = read_manifest(dir);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  if (manifest.value("format_version", 0) != kFormatVersion)
    return "manifest.json: unsupported format_version " + manifest.value("format_version", json()).dump();
  if (!manifest.contains("files") || !manifest["files"].is_object())
    return "manifest.json: no file list";
  // Every rank file the manifest's shard map names must be among the hashed files, or
  // the checkpoint would verify and then fail to load.
  if (manifest.contains("optimizer_shards") && manifest["optimizer_shards"].is_object())
    for (const auto& item : manifest["optimizer_shards"].items())
      if (!manifest["files"].contains(item.key()))
        return item.key() + " is named in optimizer_shards but is not in the checkpoint's file list";
  std::vector<std::pair<std::string, uint64_t>> files;
  for (const auto& item : manifest["files"].items()) {
    const fs::path path = fs::path(dir) / item.key();
    if (!fs::exists(path)) return item.key() + ", listed in manifest.json, is missing";
    const auto expected_bytes = item.value().value("bytes", uint64_t(0));
    const auto bytes = fs::file_size(path);
    if (bytes != expected_bytes)
      return item.key() + " has " + std::to_string(bytes) + " bytes, the manifest says " +
             std::to_string(expected_bytes) + " (truncated?)";
    files.emplace_back(item.key(), bytes);
  }
  for (const auto& name : files_hashed_by(files, share, shares))
    if (sha256_file((fs::path(dir) / name).string()) != manifest["files"][name].value("sha256", ""))
      return name + " does not match its SHA-256 in the manifest (corrupted)";
  return "";
}

}  // namespace

std::string verify_checkpoint(const std::string& dir, int share, int shares) {
  // A damaged checkpoint is reported, never thrown: on a resume every rank must come
  // back with an answer, or the others would wait for it.
  try {
    return find_damage(dir, share, shares);
  } catch (const nlohmann::json::exception& e) {
    return std::string("manifest.json: malformed entry: ") + e.what();
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::optional<std::string> resolve_resume(const std::string& spec, const std::string& root,
                                          std::vector<std::string>* skipped,
                                          const std::string& option,
                                          const CheckpointVerifier& verifier) {
  const CheckpointVerifier verify =
      verifier ? verifier : [](const std::string& dir) { return verify_checkpoint(dir); };
  if (spec == "auto") return newest_verified(root, skipped, verify);
  const fs::path path(spec);
  if (!fs::exists(path)) throw CheckpointError(option + " " + spec + ": no such checkpoint or run directory");
  if (looks_like_checkpoint(spec)) {
    const std::string problem = verify(spec);
    if (!problem.empty()) throw CheckpointError(option + " " + spec + ": damaged checkpoint: " + problem);
    return spec;
  }
  const fs::path nested = RunDir(spec).checkpoints();
  std::vector<std::string> notes;
  const auto found = newest_verified(fs::exists(nested) ? nested : path, &notes, verify);
  if (skipped) skipped->insert(skipped->end(), notes.begin(), notes.end());
  if (!found) {
    // Say why: each damaged checkpoint passed over names its damaged file.
    std::string why;
    for (const auto& note : notes) why += "; " + note;
    throw CheckpointError(option + " " + spec + ": holds no complete checkpoint" + why);
  }
  return found;
}

std::string resolve_checkpoint(const std::string& spec, const std::string& option,
                               std::vector<std::string>* skipped) {
  const auto found = spec == "auto" ? std::nullopt : resolve_resume(spec, spec, skipped, option);
  if (!found) throw CheckpointError(option + " " + spec + ": holds no complete checkpoint");
  return *found;
}

}  // namespace crsm::checkpoint
