#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "model/block.h"
#include "model/layer_cache.h"
#include "model/model_config.h"
#include "model/rms_norm.h"
#include "model/unit_hooks.h"

namespace crsm::model {

struct SequenceOutput {
  at::Tensor logits;  // [batch, T, vocab]
  at::Tensor values;  // [batch, T, num_layers]: value head l applied to h_l
};

struct StepOutput {
  at::Tensor logits;  // [batch, vocab]
  at::Tensor values;  // [batch, num_layers]
};

// Gated injection of planned latents into a step (SPEC §9): after block l computes h_l,
// h_l <- (1 - alpha_l) * h_l + alpha_l * target_l, and block l + 1 consumes the injected
// stream. A block carries only its cache to the next token, so this is the one place
// where an injection reaches the deeper layers' caches and with them every later token.
struct Injection {
  at::Tensor target;  // [batch, num_layers, d_model]
  at::Tensor alpha;   // [batch, num_layers]
  at::Tensor moved;   // set by step(): ||delta h_l|| injected, [batch, num_layers]
};

// The Mamba language model with per-layer value heads (SPEC §3): embedding, blocks,
// final norm (norm_f), lm_head, value_heads. Parallel mode for training; recurrent
// mode (prefill, step) for generation and planning.
class BackboneImpl : public torch::nn::Module {
 public:
  explicit BackboneImpl(const ModelConfig& cfg);

  // tokens [batch, T] (int64) -> logits and per-layer values at every position.
  SequenceOutput forward(const at::Tensor& tokens);

  // The latents h_l (residual stream after block l) at every position, in parallel
  // mode: tokens [batch, T] -> [batch, T, num_layers, d_model]. Distillation records them.
  at::Tensor latents(const at::Tensor& tokens);

  // Runs the prompt in parallel mode and leaves in `state` everything a following
  // step needs; returns the outputs at the prompt's last position.
  StepOutput prefill(const at::Tensor& tokens, ModelState& state);

  // Consumes one token per row, tokens [batch], in O(1); with an injection, mixes the
  // target into each block's output before the next block runs.
  StepOutput step(const at::Tensor& tokens, ModelState& state, Injection* injection = nullptr);

  // Policy logits and per-layer values from latents [batch, num_layers, d_model].
  StepOutput predict_from_states(const at::Tensor& latents);

  ModelState empty_state(int64_t batch) const;

  // Activation checkpointing (block_checkpoint.h) for the parallel forward passes that
  // record gradients: each block keeps only its input until backward recomputes it.
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }

  // Announces each use of a unit (parameter_unit()) to `hooks`, which the caller keeps
  // alive while set.
  void set_unit_hooks(UnitHooks* hooks) { hooks_ = hooks; }
  UnitHooks* unit_hooks() const { return hooks_; }

  const ModelConfig& config() const { return cfg_; }
  at::Tensor embed(const at::Tensor& tokens);

 private:
  at::Tensor head(const at::Tensor& h);  // final norm + LM head
  at::Tensor embed_unit(const at::Tensor& tokens);
  at::Tensor block_unit(size_t l, const at::Tensor& h, LayerCache* cache);
  // Parallel mode through every block: the latent after each, [batch, T, d_model].
  std::vector<at::Tensor> run_blocks(const at::Tensor& tokens);
  at::Tensor values_of(const std::vector<at::Tensor>& latents);

  ModelConfig cfg_;
  torch::nn::Embedding embedding_{nullptr};
  torch::nn::ModuleList layers_{nullptr};
  std::vector<Block> blocks_;
  bool checkpointing_ = false;
  UnitHooks* hooks_ = nullptr;
  RMSNorm norm_f_{nullptr};
  torch::nn::Linear lm_head_{nullptr};
  torch::nn::ModuleList value_heads_{nullptr};
  std::vector<torch::nn::Linear> heads_;
};
TORCH_MODULE(Backbone);

// The unit a parameter belongs to, for hooks (unit_hooks.h), numbered in the order
// forward runs them: 0 the embedding, 1..num_layers the blocks, num_layers + 1 the final
// norm with the LM head (which borrows unit 0 when embeddings are tied), num_layers + 2
// the value heads. std::invalid_argument for a name the backbone does not have.
int parameter_unit(const ModelConfig& cfg, const std::string& parameter_name);

// Consensus value of a state from its num_layers per-layer values: mean over layers
// - 0.1 * (population) std over layers, so layers that disagree lower the value. On the
// host: the search reads each leaf's values there anyway.
double consensus_value(const double* values, int64_t num_layers);

}  // namespace crsm::model
