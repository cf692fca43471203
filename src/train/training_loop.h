#pragma once

// One training loop for every stage (SPEC §10): stage 1 and 4 train the backbone,
// stage 2 the latent dynamics. What differs is an Objective (what trains and its loss)
// and a BatchSource (where the rows come from); everything else is here once: data
// parallel buckets and ZeRO sharding, AdamW, warm-up + cosine, clipping, gradient
// accumulation, NaN/Inf detection, preemption, sharded checkpoints with exact resume,
// metrics.jsonl and rank 0's progress lines.
//
// A step: for each of grad_accum micro-batches of the source's batch, backward on
// Objective::losses()[0]; then one reduction carries the reported losses and whether any
// rank was signalled; clip, update, gather. Every log_every steps the window's mean
// losses are reported; every eval_every steps (and at the end) Objective::validate().

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/new_directories.h"
#include "data/batch_sampler.h"
#include "dist/communicator.h"
#include "model/unit_hooks.h"
#include "base/exit_status.h"
#include "train/mixed_precision.h"
#include "checkpoint/training_checkpoint.h"
#include "train/trainable.h"

namespace torch::nn {
class Module;
}

namespace crsm::train {

// Tensors sharing their first dimension (rows), on the training device.
using Batch = std::vector<at::Tensor>;

// This rank's rows of each global batch, in an order fixed by the seed, so that a
// checkpoint's position resumes the run on exactly the batches it would have seen.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t batches_per_epoch() const = 0;
  virtual int64_t rows() const = 0;  // of each batch, on this rank
  virtual Batch next() = 0;  // then advances, rolling over into the next epoch
  virtual data::SamplerPosition position() const = 0;
  virtual void set_position(const data::SamplerPosition& position) = 0;
};

// What a report adds to metrics.jsonl and to its progress line.
struct Report {
  nlohmann::json record;  // besides "step" and "split"
  std::string line;       // e.g. "loss 1.2345 | ppl 3.44"
};

// What a stage trains and how well.
class Objective {
 public:
  virtual ~Objective() = default;
  // Saved as model.safetensors in every checkpoint.
  virtual torch::nn::Module& module() = 0;
  virtual TrainableParameters trainable() = 0;
  // ZeRO-3: the hooks the model must call around each unit of parameters (null: none).
  // Only objectives whose trainable() names units support it.
  virtual void set_unit_hooks(model::UnitHooks* hooks) {
    if (hooks) throw std::logic_error("this objective's model has no gathering units");
  }
  // Scalars of one micro-batch: [0] is what backward runs on, the others are reported
  // (averaged over micro-batches, ranks and the logging window) by train_report().
  virtual std::vector<at::Tensor> losses(const Batch& micro_batch) = 0;
  // Whether losses() draws random numbers (dropout): then its rows are not shared out
  // over the threads (thread_shares.h).
  virtual bool draws_random_numbers() const { return false; }
  virtual Report train_report(const std::vector<double>& window_means) const = 0;
  // Collective: the validation figures, the same on every rank. record["loss"] is the
  // headline the run's result carries.
  virtual Report validate(dist::Communicator& comm) = 0;
};

struct LoopOptions {
  std::string stage;      // "backbone", "finetune" or "dynamics": recorded in checkpoints
  std::string run_dir;    // metrics.jsonl, config.json, checkpoints/
  nlohmann::json config;  // written to config.json and every manifest's "config"
  nlohmann::json manifest_extra;  // more manifest fields (merged at the top level)
  // Rank 0 writes these into each checkpoint directory besides the model (a tokenizer).
  std::function<void(const std::string& dir)> write_files;
  std::optional<std::string> continue_from;  // checkpoint to continue: optimizer, position, window
  std::string banner;     // the run's first line (rank 0)
  std::string rate_key = "tokens_per_s", rate_unit = "tok/s";
  int64_t items_per_step = 0;  // tokens (or transitions) of one global batch
  int64_t total_steps = 0, warmup_steps = 0;
  int64_t grad_accum = 1;
  double lr = 1e-3, min_lr_ratio = 0.1, weight_decay = 0.1, grad_clip = 1.0;
  int64_t eval_every = 250, save_every = 0, log_every = 10;
  int keep_last = 3;
  int zero_stage = 0;
  bool prefetch = true;  // zero stage 3: gather the next unit while one computes
  bool batch_split = true;  // CPU: each thread runs its share of a micro-batch (thread_shares.h)
  int64_t bucket_bytes = 4 << 20;
  int64_t seed = 0;
  Precision precision = Precision::kFloat32;
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
// (a damaged checkpoint to continue from); a non-finite loss or gradient stops the run
// with kExitNonFinite, checkpoints untouched; a preemption signal on any rank saves at
// the step boundary and returns kExitPreempted.
TrainResult run_training_loop(Objective& objective, BatchSource& source, const LoopOptions& options,
                              dist::Communicator& comm);

// A safe point of start-up (collective): whether a rank was signalled since main()
// installed the handlers; rank 0 then says that nothing was written.
bool preempted_in_startup(dist::Communicator& comm, const std::string& command);

}  // namespace crsm::train
