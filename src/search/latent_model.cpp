#include "search/latent_model.h"

#include <torch/torch.h>

namespace crsm::search {
namespace {

at::Tensor action_tensor(const std::vector<int64_t>& actions, const at::Tensor& like) {
  return torch::tensor(actions, torch::kLong).to(like.device());
}

}  // namespace

States States::empty_like(int64_t n) const {
  auto rows_of = [n](const at::Tensor& t) {
    auto sizes = t.sizes().vec();
    sizes[0] = n;
    return torch::empty(sizes, t.options());
  };
  States out{rows_of(latents), {}};
  for (const auto& c : caches) out.caches.push_back({rows_of(c.conv_state), rows_of(c.ssm_state)});
  return out;
}

States States::index(const at::Tensor& rows) const {
  States out{latents.index_select(0, rows), {}};
  for (const auto& c : caches) out.caches.push_back({c.conv_state.index_select(0, rows), c.ssm_state.index_select(0, rows)});
  return out;
}

void States::assign(const at::Tensor& rows, const States& from) {
  TORCH_CHECK(from.caches.size() == caches.size(), "States::assign: ", from.caches.size(), " layer caches, expected ",
              caches.size());
  latents.index_copy_(0, rows, from.latents);
  for (size_t l = 0; l < caches.size(); ++l) {
    caches[l].conv_state.index_copy_(0, rows, from.caches[l].conv_state);
    caches[l].ssm_state.index_copy_(0, rows, from.caches[l].ssm_state);
  }
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
