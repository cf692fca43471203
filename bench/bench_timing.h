#pragma once

// How every benchmark of bench/ times a call.

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace crsm::bench {

// Seconds per call of fn: a warm-up call, then five rounds of repeated calls, each
// lasting at least min_seconds / 5; the median round is reported, which keeps one
// disturbed round (another process, a page fault storm) out of the figure.
inline double seconds_per_call(const std::function<void()>& fn, double min_seconds = 1.0) {
  using Clock = std::chrono::steady_clock;
  fn();
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    int calls = 0;
    const auto start = Clock::now();
    double elapsed = 0;
    do {
      fn();
      ++calls;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < min_seconds / 5);
    rounds.push_back(elapsed / calls);
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[2];
}

}  // namespace crsm::bench
