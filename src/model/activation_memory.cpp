#include "model/activation_memory.h"

#include <algorithm>

#include "model/parameter_count.h"

namespace crsm::model {
namespace {

// Float32 numbers autograd keeps per token in one block (block.cpp, mamba_mixer.cpp,
// rms_norm.cpp), with d = d_model, e = d_inner, f = d_ffn, as the CPU allocator counts
// them (tests/model/test_activation_memory.cpp):
//   each RMSNorm: its input, two d-wide intermediates and the rsqrt, and its output,
//     which the next linear keeps (4 d + 1; the block's two: 8 d + 2, or one without
//     the feed-forward branch, d_ffn = 0, which then adds nothing below either)
//   in_proj's output xz (2 e): x and z are views of it, and the scan keeps z
//   the fused causal convolution with its SiLU keeps only x and recomputes its
//   pre-activation in backward; the plain one (a product per tap, then SiLU) holds one
//   e-wide tensor more at the peak, as the allocator measures it
//   x_proj: xc (e); its output (dt_rank + 2 d_state): B, C and dt_proj's input are views
//   softplus: dt_proj's output (e); the scan: dt (e); out_proj: the scan's output (e)
//   GELU: ffn.0's output (f); ffn.3: GELU's output (f); dropout: a byte mask (f / 4)
double block_floats_per_token(const ModelConfig& cfg, ConvKernel conv) {
  const double d = static_cast<double>(cfg.d_model), e = static_cast<double>(cfg.d_inner());
  const double f = static_cast<double>(cfg.d_ffn);
  const double proj = static_cast<double>(cfg.resolved_dt_rank() + 2 * cfg.d_state);
  const double dropout_mask = cfg.dropout > 0 ? f / 4 : 0;
  const double convolution = conv == ConvKernel::kPlain ? e : 0;
  const double norms = cfg.d_ffn > 0 ? 2 : 1;
  return norms * (4 * d + 1) + 6 * e + convolution + proj + 2 * f + dropout_mask;
}

// And per block whatever the tokens: A = -exp(A_log) and the exp (2 e d_state).
double block_floats(const ModelConfig& cfg) {
  return 2 * static_cast<double>(cfg.d_inner()) * static_cast<double>(cfg.d_state);
}

// After the blocks: norm_f as above (4 d + 1), the log-softmax of the logits (vocab), a
// copy of the target ids (int64, two floats); and at the start of backward, the two
// vocab-wide gradients of the log-softmax and the logits.
double head_floats_per_token(const ModelConfig& cfg) {
  const double d = static_cast<double>(cfg.d_model), v = static_cast<double>(cfg.vocab_size);
  return 4 * d + 1 + v + 2 + 2 * v;
}

// Parameters of one block: a recomputed block's backward returns all their gradients at once.
double block_parameters(const ModelConfig& cfg) {
  double n = 0;
  for (const auto& [name, shape] : parameter_shapes(cfg)) {
    if (name.rfind("layers.0.", 0) != 0) continue;
    double size = 1;
    for (int64_t s : shape) size *= static_cast<double>(s);
    n += size;
  }
  return n;
}

}  // namespace

ActivationBytes activation_bytes(const ModelConfig& cfg, int64_t rows, int64_t seq_len, ConvKernel conv) {
  const double tokens = static_cast<double>(rows) * static_cast<double>(seq_len);
  const double layers = static_cast<double>(cfg.num_layers), d = static_cast<double>(cfg.d_model);
  const double block = tokens * block_floats_per_token(cfg, conv) + block_floats(cfg);
  const double head = tokens * head_floats_per_token(cfg);
  // Checkpointed, backward holds the blocks' inputs and, at its peak, either the head at
  // its start or one recomputed block with its parameters' gradients and the gradients
  // in flight through it (about one d_inner-wide and one d_model-wide per token).
  const double recomputing = block + block_parameters(cfg) + tokens * (static_cast<double>(cfg.d_inner()) + d);
  return {4 * (layers * block + head), 4 * (tokens * layers * d + std::max(head, recomputing))};
}

}  // namespace crsm::model
