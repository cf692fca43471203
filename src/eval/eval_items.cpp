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
