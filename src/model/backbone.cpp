#include "model/backbone.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "model/block_checkpoint.h"
#include "model/parallel_linear.h"

namespace crsm::model {

BackboneImpl::BackboneImpl(const ModelConfig& cfg) : cfg_(cfg) {
  namespace nn = torch::nn;
  embedding_ = register_module("embedding", nn::Embedding(cfg.vocab_size, cfg.d_model));
  layers_ = register_module("layers", nn::ModuleList());
  value_heads_ = register_module("value_heads", nn::ModuleList());
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    blocks_.push_back(Block(cfg));
    layers_->push_back(blocks_.back());
    heads_.push_back(nn::Linear(cfg.d_model, 1));
    value_heads_->push_back(heads_.back());
  }
  norm_f_ = register_module("norm_f", RMSNorm(cfg.d_model));
  if (!cfg.tie_embeddings)
    lm_head_ = register_module(
        "lm_head", nn::Linear(nn::LinearOptions(cfg.d_model, cfg.vocab_size).bias(false)));
  torch::NoGradGuard no_grad;
  embedding_->weight.normal_(0.0, 0.02);
}

at::Tensor BackboneImpl::embed(const at::Tensor& tokens) {
  if (tokens.numel() > 0) {
    // On the host, read the ids where they are: four ops and two syncs less per step.
    const auto ids = tokens.is_cpu() ? tokens.contiguous() : torch::stack({tokens.min(), tokens.max()}).to(torch::kCPU);
    const auto ids_long = ids.to(torch::kLong);
    const auto* p = ids_long.data_ptr<int64_t>();
    const auto [lo, hi] = std::minmax_element(p, p + ids_long.numel());
    if (*lo < 0 || *hi >= cfg_.vocab_size)
      throw std::out_of_range("token id " + std::to_string(*lo < 0 ? *lo : *hi) +
                              " outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) + ")");
  }
  return embedding_(tokens);
}

int parameter_unit(const ModelConfig& cfg, const std::string& name) {
  const int layers = static_cast<int>(cfg.num_layers);
  if (name.rfind("embedding.", 0) == 0) return 0;
  if (name.rfind("layers.", 0) == 0) return 1 + std::stoi(name.substr(7));
  if (name.rfind("norm_f.", 0) == 0 || name.rfind("lm_head.", 0) == 0) return layers + 1;
  if (name.rfind("value_heads.", 0) == 0) return layers + 2;
  throw std::invalid_argument("backbone: no unit holds a parameter named " + name);
}

at::Tensor BackboneImpl::embed_unit(const at::Tensor& tokens) {
  const UnitUse use(hooks_, {0});
  return use.mark(embed(tokens));
}

at::Tensor BackboneImpl::block_unit(size_t l, const at::Tensor& h, LayerCache* cache) {
  const UnitUse use(hooks_, {static_cast<int>(l) + 1});
  const bool recompute = !cache && checkpointing_ && is_training() && torch::GradMode::is_enabled();
  return use.mark(recompute ? checkpointed_forward(blocks_[l], h, cfg_.dropout > 0) : blocks_[l]->forward(h, cache));
}

at::Tensor BackboneImpl::head(const at::Tensor& h) {
  const int unit = static_cast<int>(cfg_.num_layers) + 1;
  const UnitUse use(hooks_, cfg_.tie_embeddings ? std::vector<int>{unit, 0} : std::vector<int>{unit});
  const auto normed = norm_f_(h);
  return use.mark(parallel_linear(normed, cfg_.tie_embeddings ? embedding_->weight : lm_head_->weight, {}));
}

at::Tensor BackboneImpl::values_of(const std::vector<at::Tensor>& latents) {
  const UnitUse use(hooks_, {static_cast<int>(cfg_.num_layers) + 2});
  std::vector<at::Tensor> values;
  values.reserve(latents.size());
  for (size_t l = 0; l < latents.size(); ++l)
    values.push_back(heads_[l](latents[l]).squeeze(-1));
  const auto stacked = torch::stack(values, -1);
  return use.mark(cfg_.value_target == ValueTarget::kOutcome ? stacked.sigmoid() : stacked);
}

std::vector<at::Tensor> BackboneImpl::run_blocks(const at::Tensor& tokens) {
  auto h = embed_unit(tokens);
  std::vector<at::Tensor> latents;
  latents.reserve(blocks_.size());
  for (size_t l = 0; l < blocks_.size(); ++l) {
    h = block_unit(l, h, nullptr);
    latents.push_back(h);
  }
  return latents;
}

SequenceOutput BackboneImpl::forward(const at::Tensor& tokens) {
  const auto latents = run_blocks(tokens);
  return {head(latents.back()), values_of(latents)};
}

at::Tensor BackboneImpl::latents(const at::Tensor& tokens) { return torch::stack(run_blocks(tokens), 2); }

StepOutput BackboneImpl::prefill(const at::Tensor& tokens, ModelState& state) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) > 0, "prefill: tokens must be [batch, T>0]");
  state.caches.assign(blocks_.size(), LayerCache{});
  auto h = embed_unit(tokens);
  std::vector<at::Tensor> last;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    h = block_unit(l, h, &state.caches[l]);
    last.push_back(h.select(1, -1));
  }
  state.latents = torch::stack(last, 1);
  state.position = tokens.size(1);
  return {head(last.back()), values_of(last)};
}

StepOutput BackboneImpl::step(const at::Tensor& tokens, ModelState& state, Injection* injection) {
  TORCH_CHECK(tokens.dim() == 1, "step: tokens must be [batch]");
  TORCH_CHECK(state.caches.size() == blocks_.size(), "step: state has ", state.caches.size(),
              " layer caches, the model has ", blocks_.size(), " layers");
  if (injection)
    TORCH_CHECK(injection->target.dim() == 3 && injection->target.size(1) == cfg_.num_layers &&
                    injection->alpha.dim() == 2 && injection->alpha.size(1) == cfg_.num_layers,
                "step: injection target must be [batch, ", cfg_.num_layers, ", ", cfg_.d_model,
                "] and alpha [batch, ", cfg_.num_layers, "]");
  auto h = embed_unit(tokens);
  std::vector<at::Tensor> latents, moved;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    h = [&] {
      const UnitUse use(hooks_, {static_cast<int>(l) + 1});
      return blocks_[l]->step(h, state.caches[l]);
    }();
    if (injection) {
      const auto delta = injection->alpha.select(1, l).unsqueeze(-1) *
                         (injection->target.select(1, l) - h);
      h = h + delta;
      moved.push_back(delta.norm(2, -1));
    }
    latents.push_back(h);
  }
  if (injection) injection->moved = torch::stack(moved, 1);
  state.latents = torch::stack(latents, 1);
  state.position += 1;
  return {head(h), values_of(latents)};
}

StepOutput BackboneImpl::predict_from_states(const at::Tensor& latents) {
  TORCH_CHECK(latents.dim() == 3 && latents.size(1) == cfg_.num_layers &&
                  latents.size(2) == cfg_.d_model,
              "predict_from_states: latents must be [batch, ", cfg_.num_layers, ", ",
              cfg_.d_model, "], got ", latents.sizes());
  return {head(latents.select(1, cfg_.num_layers - 1)), values_of(latents.unbind(1))};
}

ModelState BackboneImpl::empty_state(int64_t batch) const {
  const auto options = embedding_->weight.options().requires_grad(false);
  ModelState state;
  for (const auto& block : blocks_) state.caches.push_back(block->mixer()->empty_cache(batch, options));
  state.latents = torch::zeros({batch, cfg_.num_layers, cfg_.d_model}, options);
  return state;
}

double consensus_value(const double* values, int64_t num_layers) {
  double mean = 0;
  for (int64_t l = 0; l < num_layers; ++l) mean += values[l];
  mean /= static_cast<double>(num_layers);
  double variance = 0;
  for (int64_t l = 0; l < num_layers; ++l) variance += (values[l] - mean) * (values[l] - mean);
  return mean - 0.1 * std::sqrt(variance / static_cast<double>(num_layers));
}

}  // namespace crsm::model
