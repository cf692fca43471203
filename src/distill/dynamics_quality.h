#pragma once

// Stage 3's check (the seed's check_dynamics_quality, SPEC §4): a dynamics model against
// the backbone's own transitions on held-out text. One-step figures per layer (MSE, MAE,
// R², and the two trivial predictors' R²), the seed's verdict on the average MSE, and
// k-step rollouts: the dynamics applied k times from h(t) against the backbone's exact
// h(t + k), over every start t of every window (never from the zero state).

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/token_shards.h"
#include "model/backbone.h"
#include "distill/delta_score.h"
#include "distill/dynamics_training.h"

namespace crsm::distill {

struct RolloutError {
  int64_t k = 0;
  int64_t starts = 0;
  double mse = 0;       // of the predicted h(t + k), per element
  double zero_mse = 0;  // of predicting h(t + k) = h(t)
  double r2 = 0;        // of the displacement h(t + k) − h(t), over every layer
};

struct QualityReport {
  DeltaScore one_step;
  std::vector<RolloutError> rollouts;
  std::string verdict;  // the seed's scale on avg MSE: excellent < 0.01 <= good < 0.1 <= acceptable < 1 <= poor
  nlohmann::json to_json() const;
};

// "excellent", "good", "acceptable" or "poor".
std::string mse_verdict(double avg_mse);

// `samples` transitions from windows of seq_len + 1 tokens of `split`, planned with
// `seed` like a collection; rollouts for each k in `ks` (each <= seq_len).
QualityReport check_dynamics_quality(model::Backbone& backbone, const checkpoint::SavedDynamics& dynamics,
                                     const data::TokenSplit& split, int64_t samples, int64_t seq_len,
                                     uint64_t seed, const std::vector<int64_t>& ks, const std::string& source);

}  // namespace crsm::distill
