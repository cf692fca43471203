#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace crsm::model {

// Every norm of the backbone uses it; exports name it (transformers' layer_norm_epsilon).
inline constexpr double kRmsNormEps = 1e-5;

// y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t dim, double eps = kRmsNormEps);
  at::Tensor forward(const at::Tensor& x);

 private:
  double eps_;
  at::Tensor weight_;
};
TORCH_MODULE(RMSNorm);

}  // namespace crsm::model
