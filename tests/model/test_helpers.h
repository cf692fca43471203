#pragma once

#include <torch/torch.h>

#include "model/model_config.h"

namespace crsm::testing {

// A model small enough for unit tests yet with every feature exercised: two layers,
// a d_inner that is not a multiple of the scan's channel block.
inline model::ModelConfig tiny_model_config() {
  model::ModelConfig c;
  c.vocab_size = 50;
  c.d_model = 20;
  c.d_state = 6;
  c.d_ffn = 40;
  c.num_layers = 2;
  c.dropout = 0.0;
  return c;
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace crsm::testing
