#pragma once

// Checkpoint directories on disk (SPEC §8):
//
//   <root>/step_00000100/manifest.json   step, config, sampler and RNG state, and the
//                                        size and SHA-256 of every other file
//   <root>/step_00000100/...             model, optimizer shards, tokenizer
//   <root>/latest                        name of the newest complete checkpoint
//
// A checkpoint is written into <name>.tmp, every file synced, the manifest written
// last, then the directory is renamed and `latest` replaced, so a crash at any moment
// leaves either the old set of checkpoints or the new one, never a half-written one
// under a final name. Several ranks can share this: one rank begins, every rank writes
// its own files into the temporary directory, and one rank commits after a barrier.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/error.h"

namespace crsm::checkpoint {

class CheckpointError : public Error {
 public:
  using Error::Error;
};

std::string checkpoint_name(int64_t step);  // "step_00000100"

// The file every checkpoint directory holds, written last: its manifest.
inline constexpr const char* kManifestFile = "manifest.json";

// Whether `path` names a checkpoint directory rather than a run (it holds a manifest, or
// has a checkpoint's name).
bool looks_like_checkpoint(const std::string& path);

// Whether root holds any checkpoint directory under its final name (complete or not).
bool holds_checkpoints(const std::string& root);

// Creates <root>/<name>.tmp afresh and returns its path.
std::string begin_checkpoint(const std::string& root, int64_t step);

// Removes the <name>.tmp directories of saves that never completed (a crash, a full
// disk) and returns their names. They can never become checkpoints, and on a full disk
// they hold the space the next save needs. Only a job that writes to root may call it:
// a save in progress looks the same.
std::vector<std::string> remove_unfinished_saves(const std::string& root);

// Size and SHA-256 of one checkpoint file.
struct FileDigest {
  uint64_t bytes = 0;
  std::string sha256;
};
// Hashes a file that was written (and synced) through base::AtomicFile.
FileDigest digest_file(const std::string& path);

// Writes manifest.json (`manifest` plus "files": the size and SHA-256 of every file in
// tmp_dir, taken from `known` where given, so each rank can hash the file it wrote
// instead of one rank reading them all), renames the directory to its final name,
// points `latest` at it and removes all but the newest keep_last checkpoints
// (keep_last <= 0 keeps all; never the one just written). Returns the final path.
std::string commit_checkpoint(const std::string& root, const std::string& tmp_dir,
                              nlohmann::json manifest, int keep_last,
                              const std::map<std::string, FileDigest>& known = {});

// "" when dir holds a complete checkpoint whose files match the manifest's sizes and
// SHA-256s; otherwise what is wrong, naming the file. Hashing is most of the cost, so it
// can be split: share `share` of `shares` checks the manifest and every file's size but
// hashes only its part of the files (by size, so the parts read about equal bytes).
std::string verify_checkpoint(const std::string& dir, int share = 0, int shares = 1);

// How resolve_resume checks a candidate: verify_checkpoint's contract.
using CheckpointVerifier = std::function<std::string(const std::string& dir)>;

nlohmann::json read_manifest(const std::string& dir);

// What a checkpoint holds, in one SHA-256: of every file's name and SHA-256 in its
// manifest (no file is read again). Two checkpoints with the same files have the same.
std::string checkpoint_digest(const std::string& dir);

// Chooses the checkpoint for --resume. spec "auto": the newest checkpoint under root
// that verifies (nullopt when there is none: a fresh start); each damaged one passed
// over is described in `skipped`. Otherwise spec is a path: a checkpoint directory, or
// a run directory (its checkpoints/ is searched like "auto" but must yield one). A
// path that is missing, damaged or holds no checkpoint throws CheckpointError, naming
// `option` (the command-line flag the path came from) and, for a run directory, each
// damaged checkpoint and its damaged file. Candidates are checked with
// `verify` (verify_checkpoint when empty).
std::optional<std::string> resolve_resume(const std::string& spec, const std::string& root,
                                          std::vector<std::string>* skipped,
                                          const std::string& option = "--resume",
                                          const CheckpointVerifier& verify = {});

// The checkpoint a command reads (generate --model, export --checkpoint): a checkpoint
// directory, or a run directory whose newest complete checkpoint is taken. Never empty:
// CheckpointError naming `option` when there is none ("auto" is a path here too).
std::string resolve_checkpoint(const std::string& spec, const std::string& option,
                               std::vector<std::string>* skipped);

}  // namespace crsm::checkpoint
