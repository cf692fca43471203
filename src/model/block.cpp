#include "model/block.h"

#include <torch/torch.h>

#include <cmath>

#include "model/parallel_linear.h"

namespace crsm::model {

BlockImpl::BlockImpl(const ModelConfig& cfg) {
  namespace nn = torch::nn;
  norm_ = register_module("norm", RMSNorm(cfg.d_model));
  mixer_ = register_module("mixer", MambaMixer(cfg));
  ffn_norm_ = register_module("ffn_norm", RMSNorm(cfg.d_model));
  ffn_ = register_module(
      "ffn", nn::Sequential(nn::Linear(cfg.d_model, cfg.d_ffn), nn::GELU(),
                            nn::Dropout(cfg.dropout), nn::Linear(cfg.d_ffn, cfg.d_model)));
  torch::NoGradGuard no_grad;
  ffn_[3]->as<nn::Linear>()->weight.div_(std::sqrt(2.0 * cfg.num_layers));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, LayerCache* cache) {
  const auto h = x + mixer_->forward(norm_(x), cache);
  return h + ffn(ffn_norm_(h));
}

at::Tensor BlockImpl::step(const at::Tensor& x, LayerCache& cache) {
  const auto h = x + mixer_->step(norm_(x), cache);
  return h + ffn(ffn_norm_(h));
}

// ffn's layers one by one, its products shared over the threads (parallel_linear.h).
at::Tensor BlockImpl::ffn(const at::Tensor& x) {
  namespace nn = torch::nn;
  const auto hidden = ffn_[2]->as<nn::Dropout>()->forward(torch::gelu(parallel_linear(*ffn_[0]->as<nn::Linear>(), x)));
  return parallel_linear(*ffn_[3]->as<nn::Linear>(), hidden);
}

}  // namespace crsm::model
