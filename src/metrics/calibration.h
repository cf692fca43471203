#pragma once

// How well predicted probabilities match outcomes: the value heads against whether an
// answer (or a token) was right, in the planning evaluation and in outcome-value training.

#include <vector>

namespace crsm::metrics {

// Expected calibration error of predicted probabilities against outcomes: equal-width
// bins over [0, 1], sum over bins of (share of predictions) * |accuracy - mean prediction|.
// Predictions outside [0, 1] are clamped into it first; non-finite ones are left out.
struct Prediction {
  double probability = 0;
  bool correct = false;
};
double expected_calibration_error(const std::vector<Prediction>& predictions, int bins = 10);

// Area under the ROC curve of predicted probabilities against outcomes: the chance that a
// right prediction scores above a wrong one, ties counting half (Mann-Whitney). NaN when
// either kind is missing; non-finite predictions are left out.
double roc_auc(const std::vector<Prediction>& predictions);

}  // namespace crsm::metrics
