#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace crsm::dist {

// The most bytes LibTorch's allocator has held at once on a CUDA device since the process
// began (what the activation plan is checked against on a GPU); 0 for the CPU, or where
// LibTorch has no CUDA.
int64_t device_peak_bytes(const c10::Device& device);

// The most resident memory this process has had at once (Linux's peak RSS, VmHWM).
int64_t host_peak_bytes();

// A CUDA device's name ("NVIDIA H100 80GB HBM3"); "" for the CPU, or where LibTorch has
// no CUDA.
std::string device_name(const c10::Device& device);

// Waits until a CUDA device has finished every kernel queued on it; nothing on the CPU,
// whose operations have finished when they return.
void synchronize(const c10::Device& device);

}  // namespace crsm::dist
