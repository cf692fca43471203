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

// Generates up to max_new_tokens after `prompt` (non-empty) in recurrent mode: the
// prompt is consumed once in parallel mode, then every token costs one O(1) step.
// on_token sees each new token as it is chosen; generation stops early at stop_token
// (when >= 0, and not returned).
std::vector<int64_t> generate(Backbone& model, const std::vector<int64_t>& prompt,
                              int64_t max_new_tokens, const SamplingOptions& options,
                              uint64_t seed, int64_t stop_token = -1,
                              const std::function<void(int64_t)>& on_token = {});

}  // namespace crsm::model
