#pragma once

// Whether the CPU step's fused paths run (parallel_linear's split over threads, the fused
// causal convolution) or their plain references. On by default; benchmarks turn it off
// to compare both in one run, and it helps to rule them out when chasing a difference.
namespace crsm::model {

void set_fused_cpu_kernels(bool on);
bool fused_cpu_kernels();

}  // namespace crsm::model
