#include "model/autocast_state.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CRSM_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace crsm::model {

bool autocast_enabled(c10::DeviceType device) {
#ifdef CRSM_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(c10::DeviceType device, bool on) {
#ifdef CRSM_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(device, on);
#else
  if (device == c10::DeviceType::CUDA)
    at::autocast::set_enabled(on);
  else
    at::autocast::set_cpu_enabled(on);
#endif
}

c10::ScalarType autocast_dtype(c10::DeviceType device) {
#ifdef CRSM_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                         : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(c10::DeviceType device, c10::ScalarType type) {
#ifdef CRSM_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(device, type);
#else
  if (device == c10::DeviceType::CUDA)
    at::autocast::set_autocast_gpu_dtype(type);
  else
    at::autocast::set_autocast_cpu_dtype(type);
#endif
}

AutocastState AutocastState::current() {
  return {autocast_enabled(c10::DeviceType::CPU), autocast_enabled(c10::DeviceType::CUDA),
          autocast_dtype(c10::DeviceType::CPU), autocast_dtype(c10::DeviceType::CUDA)};
}

AutocastAs::AutocastAs(const AutocastState& state) : previous_(AutocastState::current()) {
  apply(state);
  at::autocast::increment_nesting();
}

AutocastAs::~AutocastAs() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  apply(previous_);
}

void AutocastAs::apply(const AutocastState& s) {
  set_autocast_dtype(c10::DeviceType::CPU, s.cpu_dtype);
  set_autocast_dtype(c10::DeviceType::CUDA, s.cuda_dtype);
  set_autocast_enabled(c10::DeviceType::CPU, s.cpu);
  set_autocast_enabled(c10::DeviceType::CUDA, s.cuda);
}

}  // namespace crsm::model
