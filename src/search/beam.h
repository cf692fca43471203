#pragma once

// Beam search scored by the value heads (SPEC §9), as one batched function over a latent
// model (dynamics or exact steps, like MCTS).
//
// A hypothesis is a token sequence, its state, and a score: its log-probability under
// the policy plus the log of the consensus value of the state it reached (SPEC §3; the
// root's for the empty one). With values trained on outcomes that is the log-probability
// that sampling writes the hypothesis and that it is right: the policy keeps the search
// among the answers the value was trained on, and the value ranks them (scored by the
// value alone, a beam drifts to text no rollout ever reached, where the value means
// nothing). Each round every live
// hypothesis spawns `width` children, its policy's `width` most likely next tokens, and
// grows each by one unit:
// - kToken: the unit is that token;
// - kBlock: the unit runs on greedily (the policy's argmax) until a token ends a block
//   (a grid row) or the answer, so hypotheses are compared at block boundaries.
// All children of a round step together, one batched call per token. The `width`
// best-scored of the round's children and the hypotheses already finished are kept (ties:
// the earlier, so the order is the policy's); the search ends when every kept one is
// finished or the token limit is reached, and returns the best kept one. An answer's end
// (the verdict kTakeAndStop) finishes it with its last token; a stop token (kStop) finishes
// it without.
//
// Cost: each transition is one network step and one value evaluation. Per token a beam
// steps at most width x width children, and a search never steps more than
// max_transitions (default width^2 x max_tokens): where the next step would pass it, the
// search ends there with the best hypothesis kept (mid-block children scored where they
// stand). So a beam of width w costs about as much as w^2 sampled answers.

#include <cstdint>
#include <functional>
#include <vector>

#include "model/generation.h"
#include "search/latent_model.h"

namespace crsm::search {

enum class BeamUnit { kToken, kBlock };

struct BeamOptions {
  int64_t width = 4;
  BeamUnit unit = BeamUnit::kToken;
  int64_t max_tokens = 64;
  int64_t max_transitions = 0;  // 0: width^2 x max_tokens
  // Asked before every network call but the first: true ends the search there, with the
  // best hypothesis kept so far (a preemption signal).
  std::function<bool()> stop_requested;
};

// What the caller knows about answers: the verdict on `token` after `tokens`, and whether
// `tokens` (the token just taken last) ends a block.
struct BeamRules {
  std::function<model::StepVerdict(const std::vector<int64_t>& tokens, int64_t token)> verdict;
  std::function<bool(const std::vector<int64_t>& tokens)> ends_block;
};

struct BeamResult {
  std::vector<int64_t> tokens;
  double logprob = 0, value = 0;  // of the best hypothesis: score = logprob + log(value)
  int64_t transitions = 0;   // (state, token) pairs stepped
  int64_t network_calls = 0;
  int64_t rounds = 0;
};

// root: one state (batch 1), with caches when the model needs them. The model's networks
// should be in eval mode and gradients off.
BeamResult beam_search(LatentModel& model, const States& root, const BeamOptions& options, const BeamRules& rules);

}  // namespace crsm::search
