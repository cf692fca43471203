#pragma once

// What a training stage supplies to the engine and the loop (SPEC §10): an Objective
// (what trains, its loss, its validation) and a BatchSource (where its rows come from).
// Stages 1 and 4 train the backbone's language model (train/lm_objective.h), stage 4 on
// outcomes the value heads alone on rollouts (train/outcome_objective.h), stage 2 the
// latent dynamics (distill/dynamics_training.h).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/batch_sampler.h"
#include "dist/communicator.h"
#include "model/unit_hooks.h"
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

}  // namespace crsm::train
