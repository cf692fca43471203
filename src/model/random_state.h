#pragma once

// The state of LibTorch's default random generator on a device (dropout draws from it),
// read and restored whole: checkpoints save the CPU's, and a block recomputed in
// backward replays the numbers its forward drew.

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace crsm::model {

at::Tensor random_state(const at::Device& device);
void set_random_state(const at::Device& device, const at::Tensor& state);

}  // namespace crsm::model
