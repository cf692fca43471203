#pragma once

#include <cstdint>
#include <string>

#include "config/run_config.h"
#include "dist/communicator.h"
#include "base/exit_status.h"
#include "train/mixed_precision.h"
#include "train/training_loop.h"

namespace crsm::train {

// What `crsm_train train` takes besides the RunConfig (model shape, batch_size, seq_len,
// seed, device, zero_stage). The config's batch_size is the global batch of one
// optimizer step; grad_accum splits it into that many micro-batches.
struct TrainOptions {
  std::string data;      // a directory written by `crsm_train prepare`, or a text file
  std::string run_dir;   // metrics.jsonl, config.json, checkpoints/
  std::string resume;    // "" = fresh run, "auto", or a checkpoint or run directory
  int64_t epochs = 1;
  int64_t max_steps = 0;  // > 0: exactly this many optimizer steps (overrides epochs)
  int64_t grad_accum = 1;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = -1;  // -1: 5% of the run, at most 200 steps
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // <= 0: no clipping
  bool value_loss = true;
  double value_weight = 1.0;
  int64_t eval_every = 250;
  int64_t eval_batches = 20;  // 0: the whole validation split
  int64_t save_every = 0;     // 0: only at the end
  int keep_last = 3;
  int64_t log_every = 10;
  int64_t bucket_bytes = 4 << 20;  // gradient bucket size for the overlapped reduction
  Precision precision = Precision::kFloat32;  // bf16: autocast around forward passes
  bool activation_checkpointing = false;      // recompute each block in backward
  bool prefetch = true;                       // zero stage 3: gather the next unit early
  bool batch_split = true;                    // CPU: one share of each micro-batch per thread
};

// Runs stage 1 (value_loss off) or stage 4 (on) on every rank of `comm` (each rank
// takes batch_size / world_size rows of every global batch). Bad input (data,
// checkpoint, device, options) throws with a message naming it; a non-finite loss
// stops the run with kExitNonFinite and leaves the checkpoints as they were; a
// preemption signal on any rank makes every rank save at the next step boundary and
// return kExitPreempted.
TrainResult run_training(const RunConfig& config, const TrainOptions& options,
                         dist::Communicator& comm);

}  // namespace crsm::train
