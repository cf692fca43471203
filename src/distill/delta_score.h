#pragma once

// How well predicted deltas match true ones (SPEC §4), per layer: MSE, MAE and R², and
// the R² of the two trivial predictors a dynamics model must beat: "the state does not
// change" (zero delta) and "every token moves a layer the same way" (the training
// split's mean delta of that layer). R²_l = 1 − SSE_l / SST_l, SST_l the squared
// deviation of the true deltas from their own per-dimension mean.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/communicator.h"

namespace crsm::distill {

struct DeltaScore {
  int64_t rows = 0;
  std::vector<double> mse, mae, r2, r2_zero, r2_mean;  // per layer
  double avg_mse = 0, avg_mae = 0, avg_r2 = 0;          // over layers

  // Whether R² beats both trivial predictors at every layer.
  bool beats_trivial() const;
  nlohmann::json to_json() const;
};

// Sums over rows in double, per layer and dimension, so that ranks can add theirs up.
class DeltaScorer {
 public:
  // mean_delta [L, D]: the mean predictor's constant (the training split's mean delta).
  explicit DeltaScorer(const at::Tensor& mean_delta);
  // predicted and truth [n, L, D].
  void add(const at::Tensor& predicted, const at::Tensor& truth);
  // Collective: every rank's sums added up.
  void all_reduce(dist::Communicator& comm);
  DeltaScore score() const;

 private:
  at::Tensor mean_;  // [L, D] double
  at::Tensor sums_;  // [5, L, D] double: Σe², Σ|e|, Σy, Σy², Σ(y − mean)²
  int64_t rows_ = 0;
};

}  // namespace crsm::distill
