#include "model/mamba_mixer.h"

#include <torch/torch.h>

#include <cmath>

#include "model/causal_conv.h"
#include "model/parallel_linear.h"
#include "model/selective_scan.h"

namespace crsm::model {

MambaMixerImpl::MambaMixerImpl(const ModelConfig& cfg)
    : d_inner_(cfg.d_inner()),
      d_state_(cfg.d_state),
      dt_rank_(cfg.resolved_dt_rank()),
      d_conv_(cfg.d_conv) {
  namespace nn = torch::nn;
  in_proj_ = register_module(
      "in_proj", nn::Linear(nn::LinearOptions(cfg.d_model, 2 * d_inner_).bias(false)));
  conv1d_ = register_module(
      "conv1d", nn::Conv1d(nn::Conv1dOptions(d_inner_, d_inner_, d_conv_).groups(d_inner_)));
  x_proj_ = register_module(
      "x_proj", nn::Linear(nn::LinearOptions(d_inner_, dt_rank_ + 2 * d_state_).bias(false)));
  dt_proj_ = register_module("dt_proj", nn::Linear(dt_rank_, d_inner_));
  out_proj_ = register_module(
      "out_proj", nn::Linear(nn::LinearOptions(d_inner_, cfg.d_model).bias(false)));

  torch::NoGradGuard no_grad;
  // dt starts log-uniform in [1e-3, 1e-1]: store softplus^-1(dt) = dt + log(1 - exp(-dt)).
  const double bound = 1.0 / std::sqrt(static_cast<double>(dt_rank_));
  dt_proj_->weight.uniform_(-bound, bound);
  const auto dt = torch::exp(torch::rand({d_inner_}) * (std::log(0.1) - std::log(1e-3)) +
                             std::log(1e-3))
                      .clamp_min(1e-4);
  dt_proj_->bias.copy_(dt + torch::log(-torch::expm1(-dt)));
  // S4D-real: A[d, n] = -(n + 1).
  A_log_ = register_parameter(
      "A_log", torch::log(torch::arange(1, d_state_ + 1, torch::kFloat)).repeat({d_inner_, 1}));
  D_ = register_parameter("D", torch::ones({d_inner_}));
  // Each layer adds two residual branches (one without the FFN): keep the stream's
  // variance flat with depth.
  const double branches = cfg.d_ffn > 0 ? 2.0 : 1.0;
  out_proj_->weight.div_(std::sqrt(branches * static_cast<double>(cfg.num_layers)));
}

at::Tensor MambaMixerImpl::decay_matrix() const { return -torch::exp(A_log_); }

at::Tensor MambaMixerImpl::forward(const at::Tensor& u, LayerCache* cache) {
  // in_proj's two halves as two products: x and z are then whole tensors, and backward
  // assembles the weight's gradient from halves instead of the activations'.
  const auto x = parallel_linear(u, in_proj_->weight.narrow(0, 0, d_inner_), {});
  const auto z = parallel_linear(u, in_proj_->weight.narrow(0, d_inner_, d_inner_), {});
  const auto xc = causal_conv_silu(x, conv1d_->weight, conv1d_->bias);

  const auto proj = parallel_linear(*x_proj_, xc);
  const auto dt = torch::softplus(parallel_linear(*dt_proj_, proj.narrow(-1, 0, dt_rank_)));
  const auto B = proj.narrow(-1, dt_rank_, d_state_);
  const auto C = proj.narrow(-1, dt_rank_ + d_state_, d_state_);

  at::Tensor last;
  const auto y = selective_scan(xc, dt, decay_matrix(), B, C, D_, z, cache ? &last : nullptr);
  if (cache) {
    const int64_t T = x.size(1);
    const auto padded = torch::constant_pad_nd(x.detach(), {0, 0, d_conv_ - 1, 0});
    cache->conv_state = padded.narrow(1, T - 1, d_conv_).transpose(1, 2).contiguous();
    cache->ssm_state = last;
  }
  return parallel_linear(*out_proj_, y);
}

at::Tensor MambaMixerImpl::step(const at::Tensor& u, LayerCache& cache) {
  const auto xz = parallel_linear(*in_proj_, u);
  const auto x = xz.narrow(-1, 0, d_inner_);
  const auto z = xz.narrow(-1, d_inner_, d_inner_);

  cache.conv_state =
      torch::cat({cache.conv_state.narrow(2, 1, d_conv_ - 1), x.unsqueeze(-1)}, /*dim=*/2);
  const auto xc =
      torch::silu((cache.conv_state * conv1d_->weight.squeeze(1)).sum(-1) + conv1d_->bias);

  const auto proj = parallel_linear(*x_proj_, xc);
  const auto dt = torch::softplus(parallel_linear(*dt_proj_, proj.narrow(-1, 0, dt_rank_)));  // [batch, d_inner]
  const auto B = proj.narrow(-1, dt_rank_, d_state_);
  const auto C = proj.narrow(-1, dt_rank_ + d_state_, d_state_);

  const auto decay = torch::exp(dt.unsqueeze(-1) * decay_matrix());
  cache.ssm_state = cache.ssm_state * decay + (dt * xc).unsqueeze(-1) * B.unsqueeze(1);
  const auto y = (cache.ssm_state * C.unsqueeze(1)).sum(-1) + D_ * xc;
  return parallel_linear(*out_proj_, y * torch::silu(z));
}

LayerCache MambaMixerImpl::empty_cache(int64_t batch, const at::TensorOptions& options) const {
  return {torch::zeros({batch, d_inner_, d_conv_}, options),
          torch::zeros({batch, d_inner_, d_state_}, options)};
}

}  // namespace crsm::model
