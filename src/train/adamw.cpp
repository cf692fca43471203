#include "train/adamw.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

namespace crsm::train {

AdamW::AdamW(std::vector<Param> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p.tensor));
    exp_avg_sq_.push_back(torch::zeros_like(p.tensor));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i].tensor;
    const auto& g = p.grad();
    if (!g.defined()) continue;
    if (params_[i].decay) p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    const auto denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bias2)).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bias1);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.tensor.grad().defined()) p.tensor.mutable_grad() = at::Tensor();
}

model::NamedTensors AdamW::state() const {
  model::NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].name + ".exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].name + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  out.emplace_back("step", torch::tensor(steps_, torch::kLong));
  return out;
}

void AdamW::load_state(const model::NamedTensors& state, const std::string& source) {
  std::map<std::string, at::Tensor> given(state.begin(), state.end());
  auto take = [&](const std::string& name, const at::Tensor& like) {
    auto it = given.find(name);
    if (it == given.end()) throw model::TensorFileError(source + ": missing optimizer tensor " + name);
    if (it->second.sizes() != like.sizes())
      throw model::TensorFileError(source + ": optimizer tensor " + name + " has the wrong shape");
    return it->second;
  };
  std::vector<at::Tensor> avg, avg_sq;
  for (size_t i = 0; i < params_.size(); ++i) {
    avg.push_back(take(params_[i].name + ".exp_avg", exp_avg_[i]));
    avg_sq.push_back(take(params_[i].name + ".exp_avg_sq", exp_avg_sq_[i]));
  }
  const auto step = take("step", torch::tensor(int64_t(0)));
  if (given.size() != 2 * params_.size() + 1)
    throw model::TensorFileError(source + ": optimizer state has entries for parameters the model lacks");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(avg[i]);
    exp_avg_sq_[i].copy_(avg_sq[i]);
  }
  steps_ = step.item<int64_t>();
}

std::vector<AdamW::Param> decay_groups(const model::NamedTensors& named_parameters) {
  std::vector<AdamW::Param> out;
  for (const auto& [name, tensor] : named_parameters) {
    const bool is_state_matrix = name.size() >= 5 && name.compare(name.size() - 5, 5, "A_log") == 0;
    out.push_back({name, tensor, tensor.dim() >= 2 && !is_state_matrix});
  }
  return out;
}

}  // namespace crsm::train
