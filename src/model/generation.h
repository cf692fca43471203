#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "model/backbone.h"

namespace crsm::model {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: no top-k cut
  double top_p = 1.0;        // 1: no nucleus cut
};

// Draws a token from logits [vocab] (CPU or not). Deterministic for a given engine
// state: the draw uses the engine's raw 64-bit output, not a library distribution.
int64_t sample_token(const at::Tensor& logits, const SamplingOptions& options,
                     std::mt19937_64& rng);

// What the decoding loop does with a chosen token.
enum class StepVerdict { kTake, kTakeAndStop, kStop };  // kStop: not taken (a stop token)

// The one decoding loop's three decisions, supplied by whoever drives it (plain
// sampling below, a planner in search::Deliberator).
struct DecodingHooks {
  // The token at this position, from the output of the step that reached it.
  std::function<int64_t(const StepOutput& out, const ModelState& state)> choose;
  // Whether to take it and go on.
  std::function<StepVerdict(int64_t token, const StepOutput& out)> observe;
  // The recurrent step that consumes a taken token (token: [1] on the model's device).
  std::function<StepOutput(const at::Tensor& token, ModelState& state)> step;
};

// Decodes up to max_new_tokens after `prompt` (non-empty) in recurrent mode: the prompt
// is consumed once in parallel mode, then every token costs one O(1) step. Returns the
// tokens taken. The caller holds the model in eval mode with gradients off.
std::vector<int64_t> decode(Backbone& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                            const DecodingHooks& hooks);
// The same loop after a prompt already consumed: `out` is the prefill's output and `state`
// the state it left (copies are cheap snapshots: several decodings can start from one).
std::vector<int64_t> decode_from(StepOutput out, ModelState state, int64_t max_new_tokens, const DecodingHooks& hooks,
                                 const c10::Device& device);

// decode() with sampling: on_token sees each new token as it is chosen; generation stops
// early at stop_token (when >= 0, and not returned).
std::vector<int64_t> generate(Backbone& model, const std::vector<int64_t>& prompt,
                              int64_t max_new_tokens, const SamplingOptions& options,
                              uint64_t seed, int64_t stop_token = -1,
                              const std::function<void(int64_t)>& on_token = {});

}  // namespace crsm::model
