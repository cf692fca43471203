#include "model/block.h"

#include <torch/torch.h>

#include <cmath>

#include "model/parallel_linear.h"

namespace crsm::model {

BlockImpl::BlockImpl(const ModelConfig& cfg) {
  namespace nn = torch::nn;
  norm_ = register_module("norm", RMSNorm(cfg.d_model));
  mixer_ = register_module("mixer", MambaMixer(cfg));
  if (cfg.d_ffn == 0) return;  // the Mamba-1 block: nothing more to register
  ffn_norm_ = register_module("ffn_norm", RMSNorm(cfg.d_model));
  ffn_ = register_module(
      "ffn", nn::Sequential(nn::Linear(cfg.d_model, cfg.d_ffn), nn::GELU(),
                            nn::Dropout(cfg.dropout), nn::Linear(cfg.d_ffn, cfg.d_model)));
  torch::NoGradGuard no_grad;
  ffn_[3]->as<nn::Linear>()->weight.div_(std::sqrt(2.0 * cfg.num_layers));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, LayerCache* cache) {
  return ffn_branch(x + mixer_->forward(norm_(x), cache));
}

at::Tensor BlockImpl::step(const at::Tensor& x, LayerCache& cache) {
  return ffn_branch(x + mixer_->step(norm_(x), cache));
}

at::Tensor BlockImpl::ffn_branch(const at::Tensor& h) { return ffn_ ? h + ffn(ffn_norm_(h)) : h; }

// ffn's layers one by one, its products shared over the threads (parallel_linear.h).
at::Tensor BlockImpl::ffn(const at::Tensor& x) {
  namespace nn = torch::nn;
  const auto hidden = ffn_[2]->as<nn::Dropout>()->forward(torch::gelu(parallel_linear(*ffn_[0]->as<nn::Linear>(), x)));
  return parallel_linear(*ffn_[3]->as<nn::Linear>(), hidden);
}

}  // namespace crsm::model
