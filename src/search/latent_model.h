#pragma once

// What the search needs from a model (SPEC §9): a batch of latent states, one transition
// step for a batch of (state, action) pairs, and the policy and per-layer values of the
// states it reaches. Two implementations: the learned dynamics (latents only) and exact
// backbone steps (latents and layer caches). Tests add toy models of their own.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "model/backbone.h"
#include "model/latent_dynamics.h"

namespace crsm::search {

// n states: latents [n, L, D] and, for exact transitions, each layer's cache with batch n.
struct States {
  at::Tensor latents;
  std::vector<model::LayerCache> caches;

  int64_t size() const { return latents.size(0); }
  // n uninitialised states shaped like these.
  States empty_like(int64_t n) const;
  // The states at `rows` (a Long tensor), copied, in that order.
  States index(const at::Tensor& rows) const;
  // Overwrites the states at `rows` with `from`, row i of from into rows[i].
  void assign(const at::Tensor& rows, const States& from);
  // Bytes held by one state of this shape.
  int64_t bytes_per_state() const;
};

// The states one batched step reached, with their policy logits [n, V] and values [n, L].
struct Expansion {
  States states;
  at::Tensor logits;
  at::Tensor values;
};

class LatentModel {
 public:
  virtual ~LatentModel() = default;
  // Policy and values of states without moving them (the root of a search).
  virtual Expansion evaluate(const States& states) = 0;
  // states[i] after action actions[i], with the reached states' policy and values; one
  // batched network call for the whole batch.
  virtual Expansion step(const States& states, const std::vector<int64_t>& actions) = 0;
  // Whether the states must carry layer caches (the root of a search must have them).
  virtual bool needs_caches() const = 0;
};

// Transitions by the latent dynamics: h' = h + f(h, e(a)); policy and values by the
// backbone's heads on the predicted latents.
class DynamicsModel : public LatentModel {
 public:
  DynamicsModel(model::Backbone backbone, model::LatentDynamics dynamics);
  Expansion evaluate(const States& states) override;
  Expansion step(const States& states, const std::vector<int64_t>& actions) override;
  bool needs_caches() const override { return false; }

 private:
  model::Backbone backbone_;
  model::LatentDynamics dynamics_;
};

// Transitions by the backbone's own recurrent step on the layer caches: the latents a
// search reaches are the ones generation would reach.
class ExactModel : public LatentModel {
 public:
  explicit ExactModel(model::Backbone backbone);
  Expansion evaluate(const States& states) override;
  Expansion step(const States& states, const std::vector<int64_t>& actions) override;
  bool needs_caches() const override { return true; }

 private:
  model::Backbone backbone_;
};

// The search's view of a generation state at its current position (batch 1).
States states_of(const model::ModelState& state);

}  // namespace crsm::search
