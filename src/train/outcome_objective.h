#pragma once

// Outcome values (SPEC §3): the value heads learn, from rollouts (data/rollout_store.h),
// the probability that a sampled answer is right. Each rollout is its prompt followed by
// its answer; at every answer position, from the state after the prompt to the state after
// the answer's last token, the heads are trained by binary cross-entropy toward the
// rollout's label. The backbone stays frozen: only the heads train, so a dynamics model
// distilled from the backbone stays valid.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "model/backbone.h"
#include "train/objective.h"

namespace crsm::train {

// The rollouts of a file as sequences: tokens [N, T] int64 (prompt, answer, then 0),
// first and last [N] int64 (the positions of the state after the prompt and after the
// whole answer), label [N] float32 (1: right), item [N] int64 (the test output answered).
struct OutcomeSequences {
  at::Tensor tokens, first, last, label, item;
  int64_t size() const { return label.defined() ? label.size(0) : 0; }
};

// Which rollouts a run trains on and which it holds out: a task is held out when a hash
// of its id falls in the last `held_out_percent` of its range, so every answer to a task
// is on one side. DataError naming the file when either side is empty.
struct OutcomeSplit {
  OutcomeSequences train, val;
};
OutcomeSplit read_outcome_split(const std::string& rollouts, int64_t held_out_percent);

// This rank's rows of each global batch of rollouts, in an order drawn from (seed, epoch):
// rank r of W takes rows [r * B / W, (r + 1) * B / W) of each batch of B, so the global
// batches do not depend on W. Batch: tokens [b, T'] (T' the batch's longest), mask
// [b, T'] float (1 at the trained positions), label [b].
class OutcomeBatches : public BatchSource {
 public:
  OutcomeBatches(OutcomeSequences rows, int64_t global_batch, uint64_t seed, int rank, int world, c10::Device device);
  int64_t batches_per_epoch() const override { return batches_per_epoch_; }
  int64_t rows() const override { return global_batch_ / world_; }
  Batch next() override;
  data::SamplerPosition position() const override { return position_; }
  void set_position(const data::SamplerPosition& p) override { position_ = p; }

 private:
  OutcomeSequences rows_;
  int64_t global_batch_, batches_per_epoch_;
  uint64_t seed_;
  int rank_, world_;
  c10::Device device_;
  data::SamplerPosition position_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

// Rows [of the given indexes] as a batch (see OutcomeBatches).
Batch outcome_batch(const OutcomeSequences& rows, const std::vector<int64_t>& indexes, c10::Device device);

class OutcomeObjective : public Objective {
 public:
  // The model's value heads must be outcome heads (value_target outcome); everything
  // else in it is frozen here.
  OutcomeObjective(model::Backbone model, OutcomeSequences val, int64_t eval_batch);
  torch::nn::Module& module() override;
  TrainableParameters trainable() override;
  std::vector<at::Tensor> losses(const Batch& batch) override;
  Report train_report(const std::vector<double>& window_means) const override;
  // The held-out rollouts: loss; the consensus value's AUC and ECE against the labels at
  // the first answer token, mid-answer and at the answer's end (over all answers: it
  // also rewards telling easy tasks from hard ones); and what reranking needs, per test
  // output: how often its answer of highest value at the end is right ("pick"), beside
  // its first answer ("first") and any of them ("any").
  Report validate(dist::Communicator& comm) override;

 private:
  model::Backbone model_;
  OutcomeSequences val_;
  int64_t eval_batch_;
};

}  // namespace crsm::train
