#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "model/layer_cache.h"
#include "model/model_config.h"

namespace crsm::model {

// The selective SSM mixer of Mamba (SPEC §3), with parameter names and shapes of the
// reference module: in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj.
class MambaMixerImpl : public torch::nn::Module {
 public:
  explicit MambaMixerImpl(const ModelConfig& cfg);

  // Parallel mode over a whole sequence: u [batch, T, d_model] -> [batch, T, d_model].
  // With a cache, also leaves there the state after the last position.
  at::Tensor forward(const at::Tensor& u, LayerCache* cache = nullptr);

  // Recurrent mode, one position: u [batch, d_model] -> [batch, d_model]; O(1) in the
  // position. Replaces the cache's tensors with the next state.
  at::Tensor step(const at::Tensor& u, LayerCache& cache);

  LayerCache empty_cache(int64_t batch, const at::TensorOptions& options) const;

 private:
  at::Tensor decay_matrix() const;                    // A = -exp(A_log)

  int64_t d_inner_, d_state_, dt_rank_, d_conv_;
  torch::nn::Linear in_proj_{nullptr}, x_proj_{nullptr}, dt_proj_{nullptr}, out_proj_{nullptr};
  torch::nn::Conv1d conv1d_{nullptr};  // holds weight [d_inner, 1, d_conv] and bias
  at::Tensor A_log_, D_;
};
TORCH_MODULE(MambaMixer);

}  // namespace crsm::model
