#include "dist/cpu_setup.h"

#include <ATen/Parallel.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "base/blas_environment.h"
#include "dist/cpu_affinity.h"

namespace crsm::dist {

void prepare_blas_environment(char** argv) {
  if (!base::set_blas_environment()) return;
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with the library defaults.
}

int configure_threads(int requested, int ranks_sharing_cpus) {
  const int cpus = static_cast<int>(allowed_cpus().size());
  const int threads = requested > 0 ? requested : std::max(1, cpus / std::max(1, ranks_sharing_cpus));
  at::set_num_threads(threads);
  return threads;
}

}  // namespace crsm::dist
