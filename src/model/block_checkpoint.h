#pragma once

// Activation checkpointing of one block (SPEC §6, "memory that fits"): forward runs the
// block without recording it and keeps only its input; backward runs the block again,
// recording, and differentiates that. A block then holds d_model numbers per token
// between forward and backward instead of all its activations, for one more forward
// pass per step. The recomputation sees the same autocast settings and, when the block
// has dropout, the same random numbers, so gradients equal those without checkpointing.

#include <ATen/core/Tensor.h>

#include "model/block.h"

namespace crsm::model {

at::Tensor checkpointed_forward(Block& block, const at::Tensor& x, bool replay_random);

}  // namespace crsm::model
