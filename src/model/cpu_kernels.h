#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

// Whether the CPU step's fused paths run (parallel_linear's split over threads, the fused
// causal convolution) or their plain references. On by default; benchmarks turn it off
// to compare both in one run, and it helps to rule them out when chasing a difference.
namespace crsm::model {

void set_fused_cpu_kernels(bool on);
bool fused_cpu_kernels();

// Splits [0, n) into one range per thread, none narrower than `min_part` (except when n
// itself is), and runs body(begin, end) on each. The worker threads do not share the
// caller's grad mode: bodies work on detached tensors.
template <typename Body>
void split_over_threads(int64_t n, int64_t min_part, const Body& body) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / min_part));
  at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      const int64_t begin = n * p / parts, end = n * (p + 1) / parts;
      if (end > begin) body(begin, end);
    }
  });
}

}  // namespace crsm::model
