#pragma once

// LibTorch's autocast settings, read and written the same way across LibTorch versions
// (2.4 replaced the per-device calls by ones taking a device type), and captured as one
// value: a block recomputed in backward (activation checkpointing) runs under the
// settings its forward ran under.

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace crsm::model {

bool autocast_enabled(c10::DeviceType device);
void set_autocast_enabled(c10::DeviceType device, bool on);
c10::ScalarType autocast_dtype(c10::DeviceType device);
void set_autocast_dtype(c10::DeviceType device, c10::ScalarType type);

// Autocast on CPU and CUDA as it is now.
struct AutocastState {
  bool cpu = false, cuda = false;
  c10::ScalarType cpu_dtype = c10::ScalarType::BFloat16, cuda_dtype = c10::ScalarType::Half;
  static AutocastState current();
};

// Puts `state` in force for its lifetime and the previous one back after. It is an
// autocast region: leaving the outermost one drops LibTorch's cache of weights cast to
// the lower precision. Without that, casts made by a block recomputed in backward
// (outside the forward's region) outlived the optimizer's update and the next forward
// computed with the previous step's weights.
class AutocastAs {
 public:
  explicit AutocastAs(const AutocastState& state);
  ~AutocastAs();
  AutocastAs(const AutocastAs&) = delete;
  AutocastAs& operator=(const AutocastAs&) = delete;

 private:
  void apply(const AutocastState& s);
  AutocastState previous_;
};

}  // namespace crsm::model
