#include "dist/device_memory.h"

#ifdef CRSM_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
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

}  // namespace crsm::dist
