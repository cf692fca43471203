#pragma once

// bf16 autocast around the forward pass (SPEC §6): matrix products run in bfloat16
// while parameters, optimizer state, the residual stream, the selective scan and the
// losses stay in float32, so no loss scaling is needed.

#include <c10/core/Device.h>

#include <optional>
#include <string>

#include "model/autocast_state.h"

namespace crsm::train {

enum class Precision { kFloat32, kBFloat16 };

// "fp32" or "bf16"; std::invalid_argument naming the flag otherwise.
Precision parse_precision(const std::string& name);

// Enables autocast to bfloat16 on `device`'s type for its lifetime (no-op for fp32),
// restoring the previous state and dropping the cast-weight cache on exit, so the next
// forward sees the updated weights.
class AutocastScope {
 public:
  AutocastScope(Precision precision, c10::DeviceType device);
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  std::optional<model::AutocastAs> autocast_;
};

}  // namespace crsm::train
