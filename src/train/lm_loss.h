#pragma once

#include <ATen/core/Tensor.h>

#include "model/backbone.h"

namespace crsm::train {

struct LossParts {
  at::Tensor total;  // what backward runs on
  at::Tensor lm;     // next-token cross-entropy, mean over tokens
  at::Tensor value;  // sum over layers of the value heads' MSE (zero when off)
};

// Loss of one batch of windows [rows, T + 1] (inputs, then targets shifted by one).
// With value_weight > 0 adds the stage-4 value loss of SPEC §3: each layer's value
// head regresses the probability the model gives the true next token (no gradient
// through that target).
LossParts lm_loss(model::Backbone& model, const at::Tensor& windows, double value_weight);

// Mean next-token cross-entropy over windows (0 for none), in batches of `batch` rows,
// without gradients and in eval mode (the model's mode is restored afterwards). When
// the model's forward is collective (ZeRO-3 gathers its units), every rank must run as
// many forward passes as the others: `passes` more than its own batches are run on a
// window of zeros and not counted.
double evaluate_lm_loss(model::Backbone& model, const at::Tensor& windows, int64_t batch, int64_t passes = 0);

// Forward passes evaluate_lm_loss() takes for `rows` windows in batches of `batch`.
int64_t evaluation_passes(int64_t rows, int64_t batch);

}  // namespace crsm::train
