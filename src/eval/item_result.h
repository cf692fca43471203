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

// What a mode spent on one test output (SPEC §9): positions of the prompt the backbone
// consumed (once, however many answers follow it), backbone steps after it (every token
// generated, and a search's exact transitions), transitions of the dynamics model, and
// evaluations of the value heads that a choice or a search asked for.
struct Compute {
  int64_t prompt_steps = 0;
  int64_t answer_steps = 0;
  int64_t dynamics_steps = 0;
  int64_t value_evals = 0;
  // What decoding cost beyond the shared prompt, the unit budgets are set in: a dynamics
  // step is counted as a backbone step.
  int64_t decoding_steps() const { return answer_steps + dynamics_steps; }
  Compute& operator+=(const Compute& o) {
    prompt_steps += o.prompt_steps, answer_steps += o.answer_steps, dynamics_steps += o.dynamics_steps;
    value_evals += o.value_evals;
    return *this;
  }
};

// One test output decoded in one mode.
struct ModeOutcome {
  std::string text;
  AnswerScore score;
  // Per generated token while the answer was still right: the value of the state the
  // token was chosen from, against whether it was the answer's token.
  std::vector<Prediction> calibration;
  search::DeliberationStats stats;  // this generation's searches and injections
  // A sampling mode's answers: each one's value against whether it was right.
  std::vector<Prediction> outcomes;
  Compute compute;
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
template <typename A, typename S, base::if_is<S, Compute> = 0>
void fields(A& a, S& s) { a(s.prompt_steps, s.answer_steps, s.dynamics_steps, s.value_evals); }
template <typename A, typename S, base::if_is<S, ModeOutcome> = 0>
void fields(A& a, S& s) { a(s.text, s.score, s.calibration, s.stats, s.outcomes, s.compute, s.seconds); }
template <typename A, typename S, base::if_is<S, ItemResult> = 0>
void fields(A& a, S& s) { a(s.index, s.rank, s.prompt_tokens, s.skipped, s.modes); }

}  // namespace crsm::eval

namespace crsm::metrics {
// Beside its type, where the packer finds it.
template <typename A, typename S, base::if_is<S, Prediction> = 0>
void fields(A& a, S& s) { a(s.probability, s.correct); }
}  // namespace crsm::metrics
