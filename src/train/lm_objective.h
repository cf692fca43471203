#pragma once

// Stages 1 and 4 (SPEC §10) as the training loop sees them: windows of tokens from the
// sampler's order, and the language model's objective (next-token cross-entropy, plus the
// value heads' loss in stage 4). The benchmark trains with the same two.

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>
#include <vector>

#include "checkpoint/training_checkpoint.h"
#include "data/batch_sampler.h"
#include "data/token_shards.h"
#include "model/backbone.h"
#include "train/mixed_precision.h"
#include "train/objective.h"

namespace crsm::train {

// Windows of seq_len + 1 tokens from the sampler's order of a training split.
class TokenWindows : public BatchSource {
 public:
  TokenWindows(const data::TokenSplit& split, int64_t seq_len, int64_t batch_size, uint64_t seed, int rank, int world,
               c10::Device device);
  int64_t batches_per_epoch() const override { return sampler_.batches_per_epoch(); }
  int64_t rows() const override { return sampler_.rows(); }
  Batch next() override;
  data::SamplerPosition position() const override { return sampler_.position(); }
  void set_position(const data::SamplerPosition& p) override { sampler_.set_position(p); }

 private:
  const data::TokenSplit& split_;
  int64_t seq_len_;
  c10::Device device_;
  data::BatchSampler sampler_;
};

// Stage 1 (next-token cross-entropy) and stage 4 (plus value_weight times the value heads'
// loss). Validation: the loss over `val_windows` (this rank's), in batches of eval_batch.
class LanguageModelObjective : public Objective {
 public:
  LanguageModelObjective(model::Backbone model, checkpoint::Stage stage, double value_weight, at::Tensor val_windows,
                         int64_t eval_batch, Precision precision);

  torch::nn::Module& module() override;
  TrainableParameters trainable() override;
  void set_unit_hooks(model::UnitHooks* hooks) override;
  std::vector<at::Tensor> losses(const Batch& batch) override;
  bool draws_random_numbers() const override;
  Report train_report(const std::vector<double>& means) const override;
  Report validate(dist::Communicator& comm) override;

 private:
  model::Backbone model_;
  bool value_loss_;
  double value_weight_;
  at::Tensor val_windows_;
  int64_t eval_batch_;
  Precision precision_;
};

}  // namespace crsm::train
