#pragma once

// What a rank holds between a micro-batch's forward pass and its backward pass, from the
// model's shapes alone (SPEC §6, "memory that fits"): the tensors autograd keeps for
// backward in each block, the final norm, the logits and their log-softmax, all float32,
// and the token ids, at the peak of a training step (the start of backward). With
// activation checkpointing a block keeps only its input, and backward recomputes one
// block at a time: one block's activations and its parameters' gradients are held then.

#include <cstdint>

#include "model/model_config.h"

namespace crsm::model {

struct ActivationBytes {
  double full = 0;          // every block's activations kept
  double checkpointed = 0;  // block inputs, plus one block recomputed at a time
};

// Which causal convolution runs: the CPU's fused one recomputes its pre-activation in
// backward; the plain one (on GPUs, or on the CPU with the fused paths off) holds
// d_inner floats more per token and block.
enum class ConvKernel { kFused, kPlain };

// For `rows` sequences of `seq_len` tokens. Floating point: it cannot overflow.
ActivationBytes activation_bytes(const ModelConfig& cfg, int64_t rows, int64_t seq_len, ConvKernel conv);

}  // namespace crsm::model
