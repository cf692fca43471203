#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

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

// Central finite differences in double: every element of every input against `analytic`,
// the gradients of `loss` that the code under test computed.
template <typename Loss>
void expect_finite_difference_gradients(std::vector<torch::Tensor> inputs, const Loss& loss,
                                        const std::vector<torch::Tensor>& analytic,
                                        const std::vector<const char*>& names) {
  const double eps = 1e-6;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto flat = inputs[i].view(-1);
    const auto expected = analytic[i].reshape(-1);
    for (int64_t k = 0; k < flat.numel(); ++k) {
      const double saved = flat[k].item<double>();
      flat[k] = saved + eps;
      const double up = loss(inputs);
      flat[k] = saved - eps;
      const double down = loss(inputs);
      flat[k] = saved;
      const double numeric = (up - down) / (2 * eps);
      EXPECT_NEAR(expected[k].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
          << "d/d" << names[i] << "[" << k << "]";
    }
  }
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace crsm::testing
