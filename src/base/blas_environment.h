#pragma once

namespace crsm::base {

// Puts two OpenBLAS settings in the environment, unless the user set them already; they
// only take effect in a process that loads OpenBLAS after they are set:
//   OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2 and FMA): Debian's OpenBLAS
//                              0.3.21 does not recognise recent Xeons and falls back to
//                              its SSE3 (Prescott) kernels, 3x slower;
//   OPENBLAS_NUM_THREADS=1     OpenBLAS's own thread pool competes with LibTorch's
//                              OpenMP threads for the same cores and halves throughput.
// Also sets CRSM_BLAS_PREPARED=1, so that the process started next with this environment
// does not do it again. Nothing when CRSM_NO_BLAS_SETUP or CRSM_BLAS_PREPARED is set.
// Returns whether it changed the environment.
bool set_blas_environment();

}  // namespace crsm::base
