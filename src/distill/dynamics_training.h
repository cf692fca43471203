#pragma once

// Stage 2's training (SPEC §4, §7): the latent dynamics model f(h, a) -> Δh learns from
// the collected transitions through the one training loop (data parallel, checkpoints,
// exact resume). The loss is the mean over layers of MSE_l / Var_l, so every layer counts
// alike whatever the scale of its deltas (it is 1 − R² on the training rows), and
// validation on the held-out split reports MSE, MAE and R² per layer every epoch.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "config/run_config.h"
#include "data/transition_store.h"
#include "dist/communicator.h"
#include "checkpoint/dynamics_file.h"
#include "model/latent_dynamics.h"
#include "train/training_loop.h"

namespace crsm::distill {

// This rank's slice of a transition file (dist::rank_share of its rows),
// as batches of state [b, L, D], delta [b, L, D] and action [b] (int64). Each epoch visits
// the slice's blocks of block_rows rows in an order drawn from (seed, epoch) and shuffles
// rows within groups of buffer_blocks blocks (the shuffle buffer); the position
// (epoch, batch) alone fixes what comes next, so a checkpoint resumes it exactly.
class TransitionBatches : public train::BatchSource {
 public:
  TransitionBatches(const std::string& path, int64_t global_batch, uint64_t seed, int rank, int world,
                    int64_t block_rows = 1024, int64_t buffer_blocks = 8);

  int64_t batches_per_epoch() const override { return batches_per_epoch_; }
  int64_t rows() const override { return local_batch_; }
  train::Batch next() override;
  data::SamplerPosition position() const override { return position_; }
  void set_position(const data::SamplerPosition& p) override { position_ = p; }

 private:
  void load_group(int64_t epoch, int64_t group);

  data::TransitionReader reader_;
  int64_t first_ = 0, rows_ = 0, local_batch_ = 0, batches_per_epoch_ = 0;
  uint64_t seed_ = 0;
  int64_t block_rows_, group_rows_;
  data::SamplerPosition position_;
  int64_t loaded_epoch_ = -1, loaded_group_ = -1;
  train::Batch group_;  // the rows of the loaded group, shuffled
};

// Per-layer mean [L, D] and variance [L] of the deltas of a transition file (every rank
// reads its slice; collective).
checkpoint::DeltaMoments delta_moments(const std::string& path, dist::Communicator& comm);

struct DynamicsRun {
  std::string train_file, val_file;  // master files
  std::string run_dir;               // metrics.jsonl, checkpoints/, dynamics.safetensors, dynamics.json
  std::string tensorboard_dir;       // TensorBoard event files of metrics.jsonl's records ("": none)
  std::string backbone_dir;          // the checkpoint the transitions came from
  at::Tensor embeddings;             // the backbone's token embeddings [V, D], frozen
  model::DynamicsConfig arch;
  int64_t batch_size = 256;          // transitions per optimizer step (global)
  train::LengthOptions length;
  train::OptimizerOptions optimizer;
  train::CadenceOptions cadence;     // its eval_every is an epoch
  train::ProfileOptions profile;
  bool resume = false;               // continue <run_dir>/checkpoints when it holds one
  nlohmann::json config;             // the run config, recorded
  nlohmann::json run_info;           // how this start was asked for, appended to run_info.jsonl
  nlohmann::json metadata;           // more fields for dynamics.json (the seed's)
};

struct DynamicsResult {
  train::TrainResult train;
  nlohmann::json validation;  // the last DeltaScore
};

// Before any work: UsageError when the newest checkpoint in <run_dir>/checkpoints was
// trained with another architecture or hidden width than `arch` (it could not be
// continued), saying what differs and what to do; nothing when there is none.
void check_dynamics_resumable(const std::string& run_dir, const model::DynamicsConfig& arch);

// Collective. Writes <run_dir>/dynamics.safetensors (the weights and, in its metadata,
// the architecture) and <run_dir>/dynamics.json when the run completes.
DynamicsResult train_dynamics(const DynamicsRun& run, dist::Communicator& comm);


}  // namespace crsm::distill
