#pragma once

// One test output decoded in one mode (SPEC §9): by a decoder (greedy, or a search
// choosing every token), by a beam, or as N sampled answers from which the mode picks one.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eval/item_result.h"
#include "eval/planning_eval.h"
#include "search/deliberation.h"

namespace crsm::eval {

// The decoder of a deterministic mode: greedy, with the mode's plans where it searches.
std::unique_ptr<search::Deliberator> make_decoder(const EvalSetup& setup, const EvalMode& mode);

// The decoder's answer, its score, the calibration of its values (per token while the
// answer is right) and what it cost.
ModeOutcome decode_item(search::Deliberator& decoder, const EvalSetup& setup, const EvalItem& item,
                        const std::vector<int64_t>& prompt, const std::vector<int32_t>& answer, int64_t max_new);

// A beam mode's answer (mode.samples wide, per token or per block) over the setup's
// planner, and what it cost: its transitions are backbone steps on exact states,
// dynamics steps otherwise.
ModeOutcome beam_item(const EvalSetup& setup, const EvalItem& item, const EvalMode& mode,
                      const std::vector<int64_t>& prompt, int64_t max_new);

struct SampledAnswer {
  std::string text;
  AnswerScore score;
  double logprob = 0;   // of its tokens under the model (temperature 1)
  double value = 0;     // the consensus value of the state its last token was chosen from
  std::vector<int32_t> tokens;
  double seconds = 0;
};

// The answers sampled after one prompt, consumed once for all of them.
struct SampledAnswers {
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0;
  std::vector<SampledAnswer> answers;
};

// n answers sampled after `prompt`, the j-th drawn from a seed of (item_index, j) alone:
// every rank and every run draws the same ones, and the first k of n are the k a run
// asking for k draws.
SampledAnswers sample_answers(const EvalSetup& setup, const EvalItem& item, int64_t item_index,
                              const std::vector<int64_t>& prompt, int64_t max_new, int64_t n);

// A sampling mode's answer among the first mode.samples answers, and their cost (the
// prompt's included, as if the mode had drawn them alone).
ModeOutcome pick_answer(const EvalMode& mode, const SampledAnswers& sampled);

}  // namespace crsm::eval
