#include "cli/version.h"

#include <torch/version.h>

#include "crsm_git_describe.h"
#include "dist/communicator.h"
#include "dist/runtime.h"

namespace crsm::cli {

nlohmann::json version_info() {
  return {{"crsm", CRSM_GIT_DESCRIBE},
          {"libtorch", TORCH_VERSION},
          {"mpi", dist::mpi_library_version()},
          {"nccl", dist::nccl_version()},
          {"cuda_runtime", dist::cuda_runtime_version()}};
}

std::string version_text() {
  const auto v = version_info();
  std::string text = "crsm_train " + v["crsm"].get<std::string>() + "\n";
  for (const char* key : {"libtorch", "mpi", "nccl", "cuda_runtime"})
    text += "  " + std::string(key) + ": " + v[key].get<std::string>() + "\n";
  return text;
}

}  // namespace crsm::cli
