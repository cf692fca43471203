#include "train/step_cost.h"

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "dist/device_memory.h"

namespace crsm::train {

namespace {

// Dense bf16 tensor-core peaks from NVIDIA's data sheets, first match by name wins (so
// the PCIe and NVL H100s come before the SXM one).
struct KnownGpu {
  const char* name_part;
  double tflops;
};
constexpr KnownGpu kKnownGpus[] = {
    {"A100", 312}, {"H100 PCIe", 756}, {"H100 NVL", 835}, {"H100", 989}, {"H200", 989},
};

}  // namespace

double known_peak_tflops(const std::string& device_name) {
  for (const auto& gpu : kKnownGpus)
    if (device_name.find(gpu.name_part) != std::string::npos) return gpu.tflops;
  return 0;
}

StepCost::StepCost(const ProfileOptions& options, const c10::Device& device, int64_t trainable_parameters)
    : device_(device),
      phases_timed_(!device.is_cuda() || options.sync_timers),
      flops_per_item_(6.0 * static_cast<double>(trainable_parameters)) {
  if (options.peak_tflops > 0) {
    peak_tflops_ = options.peak_tflops;
    peak_source_ = "--peak-tflops";
  } else if (const std::string name = dist::device_name(device); known_peak_tflops(name) > 0) {
    peak_tflops_ = known_peak_tflops(name);
    peak_source_ = name;
  }
}

void StepCost::add(const PhaseSeconds& phases, double step_seconds) {
  for (size_t p = 0; p < kPhases; ++p) phase_sums_[p] += phases[p];
  step_sum_ += step_seconds;
  ++steps_;
}

nlohmann::json StepCost::window(dist::Communicator& comm, double items_per_second) {
  const double steps = static_cast<double>(std::max<int64_t>(steps_, 1));
  std::vector<std::string> keys;
  std::vector<double> values;
  if (phases_timed_)
    for (size_t p = 0; p < kPhases; ++p) {
      keys.push_back(std::string("time/") + phase_name(static_cast<Phase>(p)) + "_ms");
      values.push_back(1e3 * phase_sums_[p] / steps);
    }
  keys.push_back("time/step_ms");
  values.push_back(1e3 * step_sum_ / steps);
  const bool cuda = device_.is_cuda();
  keys.push_back(cuda ? "memory/peak_cuda_mib" : "memory/peak_rss_mib");
  values.push_back(static_cast<double>(cuda ? dist::device_peak_bytes(device_) : dist::host_peak_bytes()) / (1 << 20));
  // The maximum of the values and of their negations: both extremes in one reduction.
  const auto k = static_cast<int64_t>(values.size());
  auto extremes = torch::tensor(values, torch::kDouble);
  extremes = torch::cat({extremes, -extremes}).to(comm.device());
  dist::all_reduce_now(comm, extremes, dist::ReduceOp::kMax);
  extremes = extremes.cpu();
  nlohmann::json record = nlohmann::json::object();
  for (int64_t i = 0; i < k; ++i) {
    record[keys[static_cast<size_t>(i)] + "_max"] = extremes[i].item<double>();
    record[keys[static_cast<size_t>(i)] + "_min"] = -extremes[k + i].item<double>();
  }
  if (peak_tflops_ > 0)
    record["mfu"] = flops_per_item_ * items_per_second / (comm.world_size() * peak_tflops_ * 1e12);
  phase_sums_ = {};
  step_sum_ = 0;
  steps_ = 0;
  return record;
}

}  // namespace crsm::train
