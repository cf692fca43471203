#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "model/layer_cache.h"
#include "model/mamba_mixer.h"
#include "model/model_config.h"
#include "model/rms_norm.h"

namespace crsm::model {

// One pre-norm residual block with two branches (SPEC §3):
//   x = x + Mixer(Norm(x));  x = x + FFN(Norm(x))
// FFN = Linear(d_model -> d_ffn), GELU, Dropout, Linear(d_ffn -> d_model): ffn.{0,3}.
// With d_ffn = 0 the second branch is absent (no ffn_norm, no ffn): the Mamba-1 block of
// the reference implementation, x = x + Mixer(Norm(x)).
class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& cfg);

  at::Tensor forward(const at::Tensor& x, LayerCache* cache = nullptr);  // [batch, T, d_model]
  at::Tensor step(const at::Tensor& x, LayerCache& cache);              // [batch, d_model]

  const MambaMixer& mixer() const { return mixer_; }

 private:
  at::Tensor ffn(const at::Tensor& x);
  // h + FFN(Norm(h)), or h itself without the branch.
  at::Tensor ffn_branch(const at::Tensor& h);

  RMSNorm norm_{nullptr}, ffn_norm_{nullptr};
  MambaMixer mixer_{nullptr};
  torch::nn::Sequential ffn_{nullptr};
};
TORCH_MODULE(Block);

}  // namespace crsm::model
