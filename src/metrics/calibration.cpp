#include "metrics/calibration.h"

#include <algorithm>
#include <cmath>

namespace crsm::metrics {

double expected_calibration_error(const std::vector<Prediction>& predictions, int bins) {
  std::vector<double> confidence(bins, 0.0), hits(bins, 0.0), count(bins, 0.0);
  double counted = 0;
  for (const auto& p : predictions) {
    if (!std::isfinite(p.probability)) continue;
    counted += 1;
    const double q = std::clamp(p.probability, 0.0, 1.0);
    const int b = std::min(bins - 1, static_cast<int>(q * bins));
    confidence[b] += q;
    hits[b] += p.correct ? 1.0 : 0.0;
    count[b] += 1.0;
  }
  double ece = 0;
  for (int b = 0; b < bins; ++b)
    if (count[b] > 0) ece += std::abs(hits[b] - confidence[b]) / counted;
  return ece;
}

double roc_auc(const std::vector<Prediction>& predictions) {
  std::vector<Prediction> p;
  for (const auto& x : predictions)
    if (std::isfinite(x.probability)) p.push_back(x);
  std::sort(p.begin(), p.end(), [](const Prediction& a, const Prediction& b) { return a.probability < b.probability; });
  // The rank sum of the right ones, equal scores sharing their mean rank.
  double rank_sum = 0, right = 0;
  for (size_t i = 0; i < p.size();) {
    size_t j = i;
    while (j < p.size() && p[j].probability == p[i].probability) ++j;
    const double mean_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (size_t k = i; k < j; ++k)
      if (p[k].correct) rank_sum += mean_rank, right += 1;
    i = j;
  }
  const double wrong = static_cast<double>(p.size()) - right;
  if (right == 0 || wrong == 0) return std::nan("");
  return (rank_sum - right * (right + 1) / 2) / (right * wrong);
}

}  // namespace crsm::metrics
