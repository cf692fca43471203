#pragma once

// The Mamba mixer's causal depthwise convolution with its SiLU (SPEC §3), for one layer:
//
//   a[b, t, c] = bias[c] + sum_k weight[c, k] * x[b, t - (K - 1) + k, c]   (x = 0 before t = 0)
//   out = a * sigmoid(a)
//
// Shapes: x [batch, T, channels] (any strides: it is a view of in_proj's output),
// weight [channels, 1, K] (Conv1d's), bias [channels].

#include <ATen/core/Tensor.h>

namespace crsm::model {

// Fused on CPU tensors (float or double): one pass, threaded over rows; backward keeps only
// the inputs and recomputes the pre-activation. Elsewhere, the reference.
at::Tensor causal_conv_silu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// Plain tensor operations, one per tap, differentiated by autograd: the fused kernel is
// checked against it.
at::Tensor causal_conv_silu_reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

}  // namespace crsm::model
