#pragma once

#include <cstdint>
#include <string>

namespace crsm::model {

// What the value heads predict (SPEC §3), chosen once per run: the probability of the
// true next token (a linear head, trained by MSE against it), or the probability that
// the finished answer is right (a sigmoid over the linear head, trained by binary
// cross-entropy on rollouts' labels).
enum class ValueTarget { kNextToken, kOutcome };

// Shape of the backbone (SPEC §3). Plain data: validation lives in the config loader.
struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 128;
  int64_t d_state = 16;
  int64_t d_ffn = 512;  // 0: blocks without the feed-forward branch (block.h)
  int64_t num_layers = 4;
  double dropout = 0.0;
  int64_t expand = 2;
  int64_t d_conv = 4;
  int64_t dt_rank = 0;  // 0 means "auto": ceil(d_model / 16)
  bool tie_embeddings = false;
  std::string norm = "rmsnorm";
  ValueTarget value_target = ValueTarget::kNextToken;

  int64_t d_inner() const { return expand * d_model; }
  int64_t resolved_dt_rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
};

}  // namespace crsm::model
