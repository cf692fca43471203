#include "dist/cpu_setup.h"

#include <ATen/Parallel.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace crsm::dist {

void prepare_blas_environment(char** argv) {
  if (std::getenv("CRSM_NO_BLAS_SETUP") || std::getenv("CRSM_BLAS_PREPARED")) return;
  bool changed = false;
#if defined(__x86_64__) && defined(__GNUC__)
  if (!std::getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    setenv("OPENBLAS_CORETYPE", "Haswell", 0);
    changed = true;
  }
#endif
  if (!std::getenv("OPENBLAS_NUM_THREADS")) {
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    changed = true;
  }
  if (!changed) return;
  setenv("CRSM_BLAS_PREPARED", "1", 1);
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with the library defaults.
}

int configure_threads(int requested, int ranks_on_node) {
  int threads = requested;
  if (threads <= 0) {
    // The CPUs this process may run on (taskset, cgroups, a Slurm allocation), not
    // every CPU of the machine.
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    int cores = sched_getaffinity(0, sizeof allowed, &allowed) == 0
                    ? CPU_COUNT(&allowed)
                    : static_cast<int>(std::thread::hardware_concurrency());
    cores = std::max(1, cores);
    threads = std::max(1, cores / std::max(1, ranks_on_node));
  }
  at::set_num_threads(threads);
  return threads;
}

}  // namespace crsm::dist
