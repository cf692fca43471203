#include "model/latent_dynamics.h"

#include <torch/torch.h>

#include <cmath>

#include "base/error.h"

namespace crsm::model {

DynamicsArch parse_dynamics_arch(const std::string& word) {
  if (word == "shared") return DynamicsArch::kShared;
  if (word == "per_layer") return DynamicsArch::kPerLayer;
  if (word == "mlp") return DynamicsArch::kMlp;
  throw UsageError("unknown dynamics_arch '" + word + "' (expected shared, per_layer or mlp)");
}

std::string to_string(DynamicsArch arch) {
  switch (arch) {
    case DynamicsArch::kShared: return "shared";
    case DynamicsArch::kPerLayer: return "per_layer";
    case DynamicsArch::kMlp: return "mlp";
  }
  throw std::logic_error("to_string: invalid DynamicsArch");
}

double approximate_parameter_count(const DynamicsConfig& cfg) {
  const double L = static_cast<double>(cfg.num_layers), D = static_cast<double>(cfg.d_model);
  const double H = static_cast<double>(cfg.resolved_hidden());
  switch (cfg.arch) {
    case DynamicsArch::kShared:  // gru (3H x D, 3H x H, two 3H biases), state_proj, delta_proj, layer vectors
      return 3 * H * D + 3 * H * H + 6 * H + (H != D ? H * D : 0) + D * H + 3 * L * D;
    case DynamicsArch::kPerLayer:
      return L * (H * 2 * D + H) + L * (D * H + D);
    case DynamicsArch::kMlp:
      return H * 2 * D + H + D * H + D;
  }
  throw std::logic_error("approximate_parameter_count: invalid DynamicsArch");
}

StackedLinearImpl::StackedLinearImpl(int64_t num_layers, int64_t in, int64_t out) {
  // nn::Linear's default initialisation, layer by layer: U(-1/sqrt(in), 1/sqrt(in)).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight =
      register_parameter("weight", torch::empty({num_layers, out, in}).uniform_(-bound, bound));
  bias = register_parameter("bias", torch::empty({num_layers, out}).uniform_(-bound, bound));
}

at::Tensor StackedLinearImpl::forward(const at::Tensor& x) {
  return torch::baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2));
}

LatentDynamicsImpl::LatentDynamicsImpl(const DynamicsConfig& cfg) : cfg_(cfg) {
  TORCH_CHECK(cfg.num_layers > 0 && cfg.d_model > 0 && cfg.hidden >= 0,
              "LatentDynamics: num_layers and d_model must be positive and hidden >= 0, got ",
              cfg.num_layers, ", ", cfg.d_model, ", ", cfg.hidden);
  namespace nn = torch::nn;
  const int64_t L = cfg.num_layers, D = cfg.d_model, H = cfg.resolved_hidden();
  torch::NoGradGuard no_grad;
  switch (cfg.arch) {
    case DynamicsArch::kShared:
      gru_ = register_module("gru", nn::GRUCell(D, H));
      if (H != D)
        state_proj_ =
            register_module("state_proj", nn::Linear(nn::LinearOptions(D, H).bias(false)));
      // Always: the GRU's output is bounded, the deltas are not.
      delta_proj_ = register_module("delta_proj", nn::Linear(nn::LinearOptions(H, D).bias(false)));
      // Zero scale, gate and bias: the zero-delta predictor. The scale still gets a
      // gradient (the GRU's output is not zero), and the GRU one as soon as it moves.
      layer_scale_ = register_parameter("layer_scale", torch::zeros({L, D}));
      layer_gate_ = register_parameter("layer_gate", torch::zeros({L, D}));
      layer_bias_ = register_parameter("layer_bias", torch::zeros({L, D}));
      break;
    case DynamicsArch::kPerLayer:
      stacked_fc1_ = register_module("fc1", StackedLinear(L, 2 * D, H));
      stacked_fc2_ = register_module("fc2", StackedLinear(L, H, D));
      stacked_fc2_->weight.zero_();
      stacked_fc2_->bias.zero_();
      break;
    case DynamicsArch::kMlp:
      fc1_ = register_module("fc1", nn::Linear(2 * D, H));
      fc2_ = register_module("fc2", nn::Linear(H, D));
      fc2_->weight.zero_();
      fc2_->bias.zero_();
      break;
  }
}

// Δh_l = scale_l ⊙ g + gate_l ⊙ h_l + bias_l, with g the GRU cell's next hidden state
// from the action and the layer-mean latent. g itself, not its change from the mean: the
// change always carries -(1 - z) ⊙ mean, which the cell's bounded tanh candidate cannot
// cancel once latents leave (-1, 1). The mean alone cannot tell layers apart, Mamba
// latents differ by orders of magnitude between layers, and much of a layer's delta is
// its own latent decaying or growing: the diagonal gate_l ⊙ h_l gives each layer that
// for L·D multiplications, where a per-layer matrix would cost as much as the backbone.
at::Tensor LatentDynamicsImpl::shared_delta(const at::Tensor& states, const at::Tensor& action) {
  const auto mean = states.mean(1);
  const auto hidden = state_proj_ ? state_proj_(mean) : mean;
  const auto next = gru_(action, hidden);
  const auto global = delta_proj_ ? delta_proj_(next) : next;
  return layer_scale_ * global.unsqueeze(1) + layer_gate_ * states + layer_bias_;
}

// All layers' MLPs in two batched matmuls over [L, B, ·].
at::Tensor LatentDynamicsImpl::per_layer_delta(const at::Tensor& states, const at::Tensor& action) {
  const auto by_layer = states.transpose(0, 1);
  const auto inputs = torch::cat({by_layer, action.unsqueeze(0).expand_as(by_layer)}, -1);
  const auto hidden = torch::gelu(stacked_fc1_(inputs));
  return stacked_fc2_(hidden).transpose(0, 1);
}

at::Tensor LatentDynamicsImpl::mlp_delta(const at::Tensor& states, const at::Tensor& action) {
  const auto inputs = torch::cat({states, action.unsqueeze(1).expand_as(states)}, -1);
  return fc2_(torch::gelu(fc1_(inputs)));
}

at::Tensor LatentDynamicsImpl::forward(const at::Tensor& states, const at::Tensor& action_emb) {
  TORCH_CHECK(states.dim() == 3 && states.size(1) == cfg_.num_layers &&
                  states.size(2) == cfg_.d_model,
              "LatentDynamics: states must be [batch, ", cfg_.num_layers, ", ", cfg_.d_model,
              "], got ", states.sizes());
  TORCH_CHECK(action_emb.dim() == 2 && action_emb.size(0) == states.size(0) &&
                  action_emb.size(1) == cfg_.d_model,
              "LatentDynamics: action_emb must be [", states.size(0), ", ", cfg_.d_model,
              "], got ", action_emb.sizes());
  const auto action = action_emb * torch::rsqrt(action_emb.pow(2).mean(-1, true) + 1e-12);
  switch (cfg_.arch) {
    case DynamicsArch::kShared: return shared_delta(states, action);
    case DynamicsArch::kPerLayer: return per_layer_delta(states, action);
    case DynamicsArch::kMlp: return mlp_delta(states, action);
  }
  throw std::logic_error("LatentDynamics: invalid DynamicsArch");
}

at::Tensor LatentDynamicsImpl::step(const at::Tensor& states, const at::Tensor& action_emb) {
  return states + forward(states, action_emb);
}

at::Tensor rollout(LatentDynamics& dynamics, const at::Tensor& states,
                   const at::Tensor& action_embs) {
  TORCH_CHECK(action_embs.dim() == 3, "rollout: action_embs must be [k, batch, d_model], got ",
              action_embs.sizes());
  std::vector<at::Tensor> trajectory;
  trajectory.reserve(action_embs.size(0));
  auto current = states;
  for (const auto& action_emb : action_embs.unbind(0)) {
    current = dynamics->step(current, action_emb);
    trajectory.push_back(current);
  }
  if (trajectory.empty())
    return states.new_empty({0, states.size(0), states.size(1), states.size(2)});
  return torch::stack(trajectory);
}

}  // namespace crsm::model
