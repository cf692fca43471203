#pragma once

namespace crsm::dist {

// Call first thing in main(), before MPI or LibTorch do any work. On x86-64 CPUs with
// AVX2 and FMA it re-executes the program once with two OpenBLAS settings that must be
// in the environment before the library loads, unless the user set them already:
//   OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2): Debian's OpenBLAS 0.3.21
//                              does not recognise recent Xeons and falls back to its SSE3
//                              (Prescott) kernels, 3x slower;
//   OPENBLAS_NUM_THREADS=1     OpenBLAS's own thread pool competes with LibTorch's
//                              OpenMP threads for the same cores and halves throughput.
// CRSM_NO_BLAS_SETUP=1 turns this off. Returns normally when nothing needs doing.
void prepare_blas_environment(char** argv);

// Intra-op threads for this process: `requested` if > 0, else the CPUs this process may
// use divided among the ranks that may use them too (Runtime::ranks_sharing_cpus; at
// least 1). Applies it and returns it.
int configure_threads(int requested, int ranks_sharing_cpus);

}  // namespace crsm::dist
