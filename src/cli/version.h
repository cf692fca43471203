#pragma once

// What made this build: the code's `git describe` and the versions of the libraries it
// runs on (LibTorch, MPI, NCCL, the CUDA runtime). `crsm_train --version` prints them and
// every run records them (run_info.jsonl).

#include <string>

#include <nlohmann/json.hpp>

namespace crsm::cli {

nlohmann::json version_info();
std::string version_text();  // the lines --version prints

}  // namespace crsm::cli
