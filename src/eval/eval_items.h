#pragma once

// What the planning evaluation decodes and how it scores it (SPEC §9). An item is one
// test output of an ARC task, or one prompt/answer task: a prompt in the serialization
// of docs/arc_format.md, the exact text the model must continue it with, and the rule
// that ends its answer. The model's answer is right when its text equals that text.

#include <cstdint>
#include <string>
#include <vector>

#include "data/arc_task.h"
#include "metrics/calibration.h"

namespace crsm::eval {

// An ARC answer is a grid ended by a blank line; a text answer is one line.
enum class AnswerKind { kGrid, kText };

struct EvalItem {
  std::string task;    // the task's id
  std::string family;  // the ARC family, or "text" for prompt/answer tasks
  std::string file;    // the --tasks source the task came from
  int64_t test_index = 0;
  AnswerKind kind = AnswerKind::kGrid;
  std::string prompt;
  std::string answer;  // with its ending: a grid's "\n\n", a line's "\n"
  data::Grid expected; // kGrid: the test output
};

// Every test output of every task, in source order and then task order.
std::vector<EvalItem> eval_items(const std::vector<data::TaskSource>& sources);

// Whether `generated` has ended the answer: a blank line after a grid (or at once), the
// end of the line of a text answer.
bool answer_ended(AnswerKind kind, const std::string& generated);

struct AnswerScore {
  bool exact = false;
  int64_t cells_right = 0;  // kGrid: cells of the expected grid the answer has right at the same place
  int64_t cells = 0;        // kGrid: cells of the expected grid; 0 for text
};
AnswerScore score_answer(const EvalItem& item, const std::string& generated);

// Wilson score interval for k successes in n trials at 95 % ({0, 1} when n is 0).
std::pair<double, double> wilson_interval(int64_t k, int64_t n);

// Two-sided exact McNemar test of paired outcomes: `better` pairs where only the first
// was right, `worse` where only the second was; the p-value of a difference at least this
// large if either were equally likely (binomial, n = better + worse, 1/2), at most 1.
double mcnemar_exact_p(int64_t better, int64_t worse);

// How well predicted probabilities (the value heads') match outcomes: metrics/calibration.h.
using metrics::expected_calibration_error;
using metrics::Prediction;
using metrics::roc_auc;

}  // namespace crsm::eval
