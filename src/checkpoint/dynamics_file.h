#pragma once

// dynamics.safetensors (SPEC §7, §8): a trained latent dynamics model as distill writes
// it and assemble copies into a checkpoint. The weights, the training split's delta
// moments (stats.delta_mean [L, D], stats.delta_variance [L]: check-dynamics' mean
// predictor) and, in the metadata, the architecture and the SHA-256 of the backbone it
// was distilled from.

#include <ATen/core/Tensor.h>

#include <string>

#include "checkpoint/run_dir.h"
#include "model/latent_dynamics.h"

namespace crsm::checkpoint {

// Per-layer mean [L, D] and variance [L] of the deltas of a collection.
struct DeltaMoments {
  at::Tensor mean, variance;
};

struct SavedDynamics {
  model::LatentDynamics model{nullptr};
  DeltaMoments moments;
  std::string backbone_sha256;
};
void save_dynamics(const std::string& path, const SavedDynamics& saved);
// TensorFileError naming the file when its metadata or tensors are not a dynamics model's.
SavedDynamics load_dynamics(const std::string& path);

}  // namespace crsm::checkpoint
