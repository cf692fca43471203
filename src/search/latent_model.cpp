#include "search/latent_model.h"

#include <torch/torch.h>

namespace crsm::search {
namespace {

at::Tensor action_tensor(const std::vector<int64_t>& actions, const at::Tensor& like) {
  return torch::tensor(actions, torch::kLong).to(like.device());
}

}  // namespace

std::vector<States> States::rows() const {
  const auto latent_rows = latents.split(1, 0);
  std::vector<States> out(latent_rows.size());
  for (size_t i = 0; i < out.size(); ++i) out[i].latents = latent_rows[i];
  for (const auto& cache : caches) {
    const auto conv = cache.conv_state.split(1, 0);
    const auto ssm = cache.ssm_state.split(1, 0);
    for (size_t i = 0; i < out.size(); ++i) out[i].caches.push_back({conv[i], ssm[i]});
  }
  return out;
}

States States::join(const std::vector<const States*>& parts) {
  if (parts.size() == 1) return *parts.front();
  std::vector<at::Tensor> latents;
  for (const auto* p : parts) latents.push_back(p->latents);
  States out{torch::cat(latents, 0), {}};
  for (size_t l = 0; l < parts.front()->caches.size(); ++l) {
    std::vector<at::Tensor> conv, ssm;
    for (const auto* p : parts) {
      conv.push_back(p->caches[l].conv_state);
      ssm.push_back(p->caches[l].ssm_state);
    }
    out.caches.push_back({torch::cat(conv, 0), torch::cat(ssm, 0)});
  }
  return out;
}

int64_t States::bytes_per_state() const {
  const int64_t n = std::max<int64_t>(size(), 1);
  int64_t bytes = latents.numel() * static_cast<int64_t>(latents.element_size());
  for (const auto& c : caches)
    bytes += c.conv_state.numel() * static_cast<int64_t>(c.conv_state.element_size()) +
             c.ssm_state.numel() * static_cast<int64_t>(c.ssm_state.element_size());
  return bytes / n;
}

DynamicsModel::DynamicsModel(model::Backbone backbone, model::LatentDynamics dynamics)
    : backbone_(std::move(backbone)), dynamics_(std::move(dynamics)) {}

Expansion DynamicsModel::evaluate(const States& states) {
  auto out = backbone_->predict_from_states(states.latents);
  return {{states.latents, {}}, out.logits, out.values};
}

Expansion DynamicsModel::step(const States& states, const std::vector<int64_t>& actions) {
  const auto embedded = backbone_->embed(action_tensor(actions, states.latents));
  const auto next = dynamics_->step(states.latents, embedded);
  auto out = backbone_->predict_from_states(next);
  return {{next, {}}, out.logits, out.values};
}

ExactModel::ExactModel(model::Backbone backbone) : backbone_(std::move(backbone)) {}

Expansion ExactModel::evaluate(const States& states) {
  auto out = backbone_->predict_from_states(states.latents);
  return {states, out.logits, out.values};
}

Expansion ExactModel::step(const States& states, const std::vector<int64_t>& actions) {
  TORCH_CHECK(!states.caches.empty(), "exact transitions need the layer caches of the states");
  model::ModelState state{states.caches, states.latents, 0};
  auto out = backbone_->step(action_tensor(actions, states.latents), state);
  return {{state.latents, std::move(state.caches)}, out.logits, out.values};
}

States states_of(const model::ModelState& state) { return {state.latents, state.caches}; }

}  // namespace crsm::search
