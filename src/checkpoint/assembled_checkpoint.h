#pragma once

// Stage 3 (SPEC §8): one checkpoint holding the backbone and its dynamics model. It is
// the backbone's checkpoint (every file, so stage 4 can start from it and generate reads
// it as before) plus dynamics.safetensors, named in the manifest's "dynamics" entry with
// the SHA-256 of the backbone the dynamics was distilled from.

#include <functional>
#include <optional>
#include <string>

#include "checkpoint/dynamics_file.h"

namespace crsm::checkpoint {

// The SHA-256 of a checkpoint's model.safetensors, as its manifest records it; for a zero
// stage 3 checkpoint, the SHA-256 of its parameter rank files' names and digests.
std::string backbone_sha256(const std::string& checkpoint_dir);

// Writes <output>/checkpoints/step_N (N: the backbone's step) and returns it. UsageError
// when the dynamics was distilled from another backbone (naming both) or <output>
// already holds checkpoints. `safe_point` is called between the files it copies (it may
// throw to stop: a preemption); whatever stops it, nothing of the checkpoint is left.
std::string assemble_checkpoint(const std::string& backbone_dir, const std::string& dynamics_file,
                                const std::string& output_dir, const std::function<void()>& safe_point = {});

// The dynamics model of an assembled checkpoint; nullopt for a checkpoint without one.
// CheckpointError when its dynamics belongs to another backbone.
std::optional<SavedDynamics> load_checkpoint_dynamics(const std::string& checkpoint_dir);

}  // namespace crsm::checkpoint
