#pragma once

namespace crsm::dist {

// Call first thing in main(), before MPI or LibTorch do any work: when
// base::set_blas_environment changes the environment (OpenBLAS reads it as it loads), the
// program is executed again with it. crsm_train's launcher sets it before the program
// starts, so there this returns at once. Returns normally when nothing needs doing.
void prepare_blas_environment(char** argv);

// Intra-op threads for this process: `requested` if > 0, else the CPUs this process may
// use divided among the ranks that may use them too (Runtime::ranks_sharing_cpus; at
// least 1). Applies it and returns it.
int configure_threads(int requested, int ranks_sharing_cpus);

}  // namespace crsm::dist
