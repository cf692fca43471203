#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace crsm::model {

// Recurrent state of one mixer (SPEC §3). Steps replace these tensors with new ones
// and never write into the old ones, so copying a LayerCache is a cheap snapshot.
struct LayerCache {
  at::Tensor conv_state;  // [batch, d_inner, d_conv]: the last d_conv conv inputs, oldest first
  at::Tensor ssm_state;   // [batch, d_inner, d_state]
};

// A full model state: every layer's cache plus the latents h_l at the current
// position (the residual stream after block l), [batch, num_layers, d_model].
struct ModelState {
  std::vector<LayerCache> caches;
  at::Tensor latents;
  int64_t position = 0;  // tokens consumed so far
};

}  // namespace crsm::model
