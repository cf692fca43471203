#include "base/blas_environment.h"

#include <cstdlib>

namespace crsm::base {

bool set_blas_environment() {
  if (std::getenv("CRSM_NO_BLAS_SETUP") || std::getenv("CRSM_BLAS_PREPARED")) return false;
  bool changed = false;
#if defined(__x86_64__) && defined(__GNUC__)
  // The newest kernels this OpenBLAS has that the CPU can run: its AVX-512 ones are 1.3x
  // its AVX2 ones on the small config's products (bench/README.md).
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512cd");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!std::getenv("OPENBLAS_CORETYPE") && (avx512 || avx2)) {
    setenv("OPENBLAS_CORETYPE", avx512 ? "SkylakeX" : "Haswell", 0);
    changed = true;
  }
#endif
  if (!std::getenv("OPENBLAS_NUM_THREADS")) {
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    changed = true;
  }
  if (changed) setenv("CRSM_BLAS_PREPARED", "1", 1);
  return changed;
}

}  // namespace crsm::base
