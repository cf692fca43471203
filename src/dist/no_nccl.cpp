// Built when CMake found no CUDA toolkit with NCCL: CUDA runs must say so plainly.
#include "dist/communicator.h"

namespace crsm::dist {

std::unique_ptr<Communicator> make_nccl_communicator(int device_index, std::chrono::seconds) {
  throw CommError("--device cuda:" + std::to_string(device_index) +
                  " with several ranks needs the NCCL backend, and this build has none "
                  "(configure where the CUDA toolkit with NCCL is installed: -DCRSM_CUDA_ROOT=/usr/local/cuda)");
}

std::string nccl_version() { return "not built"; }
std::string cuda_runtime_version() { return "not built"; }

}  // namespace crsm::dist
