#pragma once

#include <cstdint>
#include <string>

#include "config/run_config.h"
#include "dist/communicator.h"
#include "base/exit_status.h"
#include "checkpoint/training_checkpoint.h"
#include "train/options.h"
#include "train/training_loop.h"

namespace crsm::train {

// What `crsm_train train` takes besides the RunConfig (model shape, batch_size, seq_len,
// seed, device). The config's batch_size is the global batch of one optimizer step;
// parallel.grad_accum splits it into that many micro-batches.
struct TrainOptions {
  checkpoint::Stage stage = checkpoint::Stage::kFinetune;  // stage 1 (backbone), 4 (finetune) or 4 on outcomes
  std::string data;      // a directory written by `crsm_train prepare`, or a text file
  std::string rollouts;  // value_target outcome: the rollout file the value heads learn from (instead of data)
  std::string run_dir;   // metrics.jsonl, config.json, checkpoints/
  std::string tensorboard_dir;  // TensorBoard event files of metrics.jsonl's records ("": none)
  std::string resume;    // "" = fresh run, "auto", or a checkpoint or run directory
  double value_weight = 1.0;
  int64_t eval_batches = 20;  // 0: the whole validation split
  bool activation_checkpointing = false;  // recompute each block in backward
  LengthOptions length;
  OptimizerOptions optimizer;
  CadenceOptions cadence;
  ParallelOptions parallel;
  ProfileOptions profile;
  nlohmann::json run_info;  // how this start was asked for, appended to run_info.jsonl
};

// Runs stage 1 or stage 4 (value_target outcome: the value heads alone, on rollouts,
// from the --resume checkpoint's backbone) on every rank of `comm` (each rank
// takes batch_size / world_size rows of every global batch). Bad input (data,
// checkpoint, device, options) throws with a message naming it; a non-finite loss
// stops the run with kExitNonFinite and leaves the checkpoints as they were; a
// preemption signal on any rank makes every rank save at the next step boundary and
// return kExitPreempted.
TrainResult run_training(const RunConfig& config, const TrainOptions& options,
                         dist::Communicator& comm);

}  // namespace crsm::train
