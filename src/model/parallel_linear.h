#pragma once

// y = x W^T + b on the CPU with the work split over LibTorch's threads. OpenBLAS runs
// single-threaded here (its own thread pool fights LibTorch's OpenMP threads, see
// dist/cpu_setup.h), so a plain at::linear leaves every other core idle during the
// products, which are most of a step. Forward and the input gradient split the rows of
// x; the weight gradient splits the rows of W. Each part is one single-threaded BLAS
// call on views, so the results equal at::linear's up to summation order.
//
// Anywhere else (a GPU, autocast, one thread, a product too small to share) it is
// at::linear itself.

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

namespace crsm::model {

at::Tensor parallel_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
// The same with a Linear module's weight and bias.
at::Tensor parallel_linear(const torch::nn::LinearImpl& layer, const at::Tensor& x);

}  // namespace crsm::model
