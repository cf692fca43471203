#include "dist/device_memory.h"

#include <sys/resource.h>

#ifdef CRSM_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace crsm::dist {

int64_t device_peak_bytes(const c10::Device& device) {
#ifdef CRSM_TORCH_CUDA
  if (device.is_cuda()) {
    // Index 0 of each statistic is the aggregate over pool types, in every version.
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats.allocated_bytes[0].peak;
  }
#endif
  (void)device;
  return 0;
}

int64_t host_peak_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux counts KiB
}

std::string device_name(const c10::Device& device) {
#ifdef CRSM_TORCH_CUDA
  if (device.is_cuda()) {
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, device.has_index() ? device.index() : c10::cuda::current_device()) ==
        cudaSuccess)
      return properties.name;
  }
#endif
  (void)device;
  return "";
}

void synchronize(const c10::Device& device) {
#ifdef CRSM_TORCH_CUDA
  if (device.is_cuda()) {
    const c10::cuda::CUDAGuard on_device(device);
    c10::cuda::device_synchronize();
  }
#endif
  (void)device;
}

}  // namespace crsm::dist
