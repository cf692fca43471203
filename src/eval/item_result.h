#pragma once

// What decoding one test output gives, typed from the rank that decoded it, across the
// ranks (base/packed.h) to the one aggregator that builds the report.

#include <cstdint>
#include <string>
#include <vector>

#include "base/packed.h"
#include "eval/eval_items.h"
#include "search/deliberation.h"

namespace crsm::eval {

// One test output decoded in one mode.
struct ModeOutcome {
  std::string text;
  AnswerScore score;
  // Per generated token while the answer was still right: the value of the state the
  // token was chosen from, against whether it was the answer's token.
  std::vector<Prediction> calibration;
  search::DeliberationStats stats;  // this generation's searches and injections
  double seconds = 0;
};

// One test output in every mode.
struct ItemResult {
  int64_t index = 0;  // in the item list
  int rank = 0;       // that decoded it
  int64_t prompt_tokens = 0;
  bool skipped = false;             // its prompt is empty or too long
  std::vector<ModeOutcome> modes;   // in the setup's mode order; empty when skipped
};

// The fields of each, listed once for base/packed.h.
template <typename A, typename S, base::if_is<S, AnswerScore> = 0>
void fields(A& a, S& s) { a(s.exact, s.cells_right, s.cells); }
template <typename A, typename S, base::if_is<S, Prediction> = 0>
void fields(A& a, S& s) { a(s.probability, s.correct); }
template <typename A, typename S, base::if_is<S, ModeOutcome> = 0>
void fields(A& a, S& s) { a(s.text, s.score, s.calibration, s.stats, s.seconds); }
template <typename A, typename S, base::if_is<S, ItemResult> = 0>
void fields(A& a, S& s) { a(s.index, s.rank, s.prompt_tokens, s.skipped, s.modes); }

}  // namespace crsm::eval
