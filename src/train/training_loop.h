#pragma once

// One training loop for every stage (SPEC §10): stage 1 and 4 train the backbone,
// stage 2 the latent dynamics. What differs is an Objective (what trains and its loss)
// and a BatchSource (where the rows come from, objective.h); the step itself is the
// engine's (engine.h). The loop adds, once for every stage: exact resume from a
// checkpoint, warm-up + cosine, NaN/Inf detection, preemption, sharded checkpoints,
// metrics.jsonl with its TensorBoard event files, and rank 0's progress lines. Every cadence.log_every steps the window's
// mean losses are reported, with what its steps cost (step_cost.h); every cadence.eval_every
// steps (and at the end) Objective::validate(). profile.trace_first..trace_last are traced
// (step_trace.h).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/exit_status.h"
#include "base/new_directories.h"
#include "checkpoint/training_checkpoint.h"
#include "dist/communicator.h"
#include "train/objective.h"
#include "train/options.h"

namespace crsm::train {

struct LoopOptions {
  checkpoint::Stage stage = checkpoint::Stage::kBackbone;  // recorded in checkpoints
  std::string run_dir;    // metrics.jsonl, config.json, checkpoints/
  std::string tensorboard_dir;  // TensorBoard event files of metrics.jsonl's records ("": none)
  nlohmann::json config;  // written to config.json and every manifest's "config"
  nlohmann::json run_info;  // appended to run_info.jsonl when the run starts (null: nothing)
  nlohmann::json manifest_extra;  // more manifest fields (merged at the top level)
  // Rank 0 writes these into each checkpoint directory besides the model (a tokenizer).
  std::function<void(const std::string& dir)> write_files;
  std::optional<std::string> continue_from;  // checkpoint to continue: optimizer, position, window
  std::string banner;     // the run's first line (rank 0)
  std::string rate_key = "tokens_per_s", rate_unit = "tok/s";
  int64_t items_per_step = 0;  // tokens (or transitions) of one global batch
  int64_t seed = 0;
  Schedule schedule;
  OptimizerOptions optimizer;
  CadenceOptions cadence;
  ParallelOptions parallel;
  ProfileOptions profile;
  base::NewDirectories* created = nullptr;  // kept once the run has written its first file
};

struct TrainResult {
  int exit_status = kExitOk;
  int64_t steps = 0;      // where the run stands
  int64_t steps_run = 0;  // optimizer steps taken by this invocation
  double final_val_loss = 0;
  nlohmann::json final_validation;  // the last validation record
  std::string last_checkpoint;
};

// Collective: every rank of `comm` calls it with its own source. Throws on bad input
// (a damaged checkpoint to continue from, a trace past the last step); a non-finite loss or gradient stops the run
// with kExitNonFinite, checkpoints untouched; a preemption signal on any rank saves at
// the step boundary and returns kExitPreempted.
TrainResult run_training_loop(Objective& objective, BatchSource& source, const LoopOptions& options,
                              dist::Communicator& comm);

// A safe point of start-up (collective): whether a rank was signalled since main()
// installed the handlers; rank 0 then says that nothing was written.
bool preempted_in_startup(dist::Communicator& comm, const std::string& command);

}  // namespace crsm::train
