#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace crsm::dist {

// The most bytes LibTorch's allocator has held at once on a CUDA device since the process
// began (what the activation plan is checked against on a GPU); 0 for the CPU, or where
// LibTorch has no CUDA.
int64_t device_peak_bytes(const c10::Device& device);

}  // namespace crsm::dist
