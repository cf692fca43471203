#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>

#include "model/dynamics_config.h"

namespace crsm::model {

// num_layers Linear maps applied side by side in one batched matmul: weight
// [num_layers, out, in] and bias [num_layers, out], where weight[l] is what an
// nn::Linear(in, out) of layer l would hold.
class StackedLinearImpl : public torch::nn::Module {
 public:
  StackedLinearImpl(int64_t num_layers, int64_t in, int64_t out);
  // x [num_layers, batch, in] -> [num_layers, batch, out].
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight, bias;
};
TORCH_MODULE(StackedLinear);

// f_theta(h, a) -> delta h (SPEC §4): predicts how a token moves every layer's latent.
// Every architecture starts as the zero-delta predictor (its output layer is zero), so
// training begins from "the state does not change". The action embedding is used divided
// by its RMS: the backbone's embeddings start at std 0.02 and stay small, and at that
// scale Adam would take thousands of steps just to grow the input weights; the
// vocabulary is finite, so rescaling each token's embedding loses nothing.
//
// Parameters, by architecture:
//   shared:    gru.{weight_ih, weight_hh, bias_ih, bias_hh}, delta_proj.weight, layer_scale,
//              layer_gate, layer_bias [L, D]; state_proj.weight when hidden != D
//   per_layer: fc1.{weight [L, hidden, 2D], bias [L, hidden]},
//              fc2.{weight [L, D, hidden], bias [L, D]}
//   mlp:       fc1.{weight [hidden, 2D], bias}, fc2.{weight [D, hidden], bias}
class LatentDynamicsImpl : public torch::nn::Module {
 public:
  explicit LatentDynamicsImpl(const DynamicsConfig& cfg);

  // states [B, L, D] (the per-layer latents h_l), action_emb [B, D] (the frozen backbone
  // embedding e(a) of the action token) -> predicted deltas [B, L, D].
  at::Tensor forward(const at::Tensor& states, const at::Tensor& action_emb);

  // One transition: states + forward(states, action_emb).
  at::Tensor step(const at::Tensor& states, const at::Tensor& action_emb);

  const DynamicsConfig& config() const { return cfg_; }

 private:
  at::Tensor shared_delta(const at::Tensor& states, const at::Tensor& action);
  at::Tensor per_layer_delta(const at::Tensor& states, const at::Tensor& action);
  at::Tensor mlp_delta(const at::Tensor& states, const at::Tensor& action);

  DynamicsConfig cfg_;
  // shared
  torch::nn::GRUCell gru_{nullptr};
  torch::nn::Linear state_proj_{nullptr}, delta_proj_{nullptr};
  at::Tensor layer_scale_, layer_gate_, layer_bias_;
  // per_layer
  StackedLinear stacked_fc1_{nullptr}, stacked_fc2_{nullptr};
  // mlp
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(LatentDynamics);

// k-step rollout: applies step() for each action embedding in order, action_embs
// [k, B, D]; returns the states after each step, [k, B, L, D].
at::Tensor rollout(LatentDynamics& dynamics, const at::Tensor& states,
                   const at::Tensor& action_embs);

}  // namespace crsm::model
