#include "eval/eval_items.h"

#include <algorithm>
#include <cmath>

namespace crsm::eval {

std::vector<EvalItem> eval_items(const std::vector<data::TaskSource>& sources) {
  std::vector<EvalItem> items;
  for (const auto& source : sources) {
    for (const auto& task : source.arc)
      for (size_t t = 0; t < task.test.size(); ++t)
        items.push_back({task.id, task.family, source.path, static_cast<int64_t>(t), AnswerKind::kGrid,
                         data::arc_prompt(task, t), data::arc_answer(task, t), task.test[t].output});
    for (const auto& task : source.text)
      items.push_back({task.id, "text", source.path, 0, AnswerKind::kText, task.prompt, task.answer + "\n", {}});
  }
  return items;
}

bool answer_ended(AnswerKind kind, const std::string& generated) {
  if (kind == AnswerKind::kText) return !generated.empty() && generated.back() == '\n';
  const size_t n = generated.size();
  return generated == "\n" || (n >= 2 && generated[n - 1] == '\n' && generated[n - 2] == '\n');
}

AnswerScore score_answer(const EvalItem& item, const std::string& generated) {
  AnswerScore s;
  s.exact = generated == item.answer;
  if (item.kind != AnswerKind::kGrid) return s;
  const auto grid = data::parse_grid_text(generated);
  for (size_t r = 0; r < item.expected.size(); ++r)
    for (size_t c = 0; c < item.expected[r].size(); ++c) {
      s.cells += 1;
      if (grid && r < grid->size() && c < (*grid)[r].size() && (*grid)[r][c] == item.expected[r][c]) s.cells_right += 1;
    }
  return s;
}

std::pair<double, double> wilson_interval(int64_t k, int64_t n) {
  if (n <= 0) return {0.0, 1.0};
  constexpr double z = 1.959963984540054;
  const double p = static_cast<double>(k) / static_cast<double>(n), nn = static_cast<double>(n);
  const double centre = (p + z * z / (2 * nn)) / (1 + z * z / nn);
  const double half = z * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / (1 + z * z / nn);
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

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

double mcnemar_exact_p(int64_t better, int64_t worse) {
  const int64_t n = better + worse, k = std::min(better, worse);
  if (n == 0) return 1.0;
  // The tail sum of C(n, i) / 2^n for i <= k, each term in logs: n can be thousands.
  double tail = 0;
  for (int64_t i = 0; i <= k; ++i)
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  return std::min(1.0, 2 * tail);
}

}  // namespace crsm::eval
