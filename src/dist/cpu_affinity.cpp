#include "dist/cpu_affinity.h"

#include <sched.h>

#include <algorithm>
#include <thread>

namespace crsm::dist {

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  if (cpus.empty())  // no affinity to read: assume every CPU
    for (int cpu = 0; cpu < static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); ++cpu)
      cpus.push_back(cpu);
  return cpus;
}

int ranks_sharing_cpus(const std::vector<std::vector<int>>& allowed, int me) {
  const auto& mine = allowed.at(static_cast<size_t>(me));
  int sharing = 0;
  for (const auto& theirs : allowed) {
    const bool overlap = std::any_of(theirs.begin(), theirs.end(), [&](int cpu) {
      return std::binary_search(mine.begin(), mine.end(), cpu);
    });
    if (overlap) ++sharing;
  }
  return std::max(1, sharing);
}

}  // namespace crsm::dist
