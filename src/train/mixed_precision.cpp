#include "train/mixed_precision.h"

#include <stdexcept>

#include "base/error.h"

namespace crsm::train {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFloat32;
  if (name == "bf16") return Precision::kBFloat16;
  throw UsageError("--precision " + name + ": expected one of fp32, bf16");
}

AutocastScope::AutocastScope(Precision precision, c10::DeviceType device) {
  if (precision == Precision::kFloat32) return;
  auto state = model::AutocastState::current();
  if (device == c10::DeviceType::CUDA) {
    state.cuda = true;
    state.cuda_dtype = c10::ScalarType::BFloat16;
  } else {
    state.cpu = true;
    state.cpu_dtype = c10::ScalarType::BFloat16;
  }
  autocast_.emplace(state);
}

}  // namespace crsm::train
