#include "train/mixed_precision.h"

#include <ATen/autocast_mode.h>

#include <stdexcept>

#include "base/error.h"
#include "model/autocast_state.h"

namespace crsm::train {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFloat32;
  if (name == "bf16") return Precision::kBFloat16;
  throw UsageError("--precision " + name + ": expected one of fp32, bf16");
}

AutocastScope::AutocastScope(Precision precision, c10::DeviceType device) : device_(device) {
  if (precision == Precision::kFloat32) return;
  active_ = true;
  was_enabled_ = model::autocast_enabled(device);
  was_dtype_ = model::autocast_dtype(device);
  model::set_autocast_dtype(device, c10::ScalarType::BFloat16);
  model::set_autocast_enabled(device, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  model::set_autocast_enabled(device_, was_enabled_);
  model::set_autocast_dtype(device_, was_dtype_);
}

}  // namespace crsm::train
