// Built when CMake found no CUDA toolkit with NCCL: CUDA runs must say so plainly.
#include "dist/communicator.h"

namespace crsm::dist {

std::unique_ptr<Communicator> make_nccl_communicator(int device_index) {
  throw CommError("--device cuda:" + std::to_string(device_index) +
                  " with several ranks needs the NCCL backend, and this build has none "
                  "(configure with CUDA and NCCL, e.g. -DCUDAToolkit_ROOT=/usr/local/cuda)");
}

bool nccl_available() { return false; }

}  // namespace crsm::dist
