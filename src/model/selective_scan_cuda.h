#pragma once

// The CUDA selective scan's launchers (selective_scan_cuda.cu, built by nvcc wherever
// the CUDA toolkit is, GPU or not). They take device pointers and no CUDA types, so the
// C++ side needs no CUDA headers; selective_scan.cpp wraps them in an autograd function
// for CUDA tensors when LibTorch has CUDA. The arithmetic is selective_scan_chunked.h.

#include <cstdint>

namespace crsm::model {

enum class ScanInput { kFloat32, kBFloat16 };

struct ScanCudaCall {
  int64_t batch, T, D, N;
  ScanInput input;              // of x, dt, B, C, z; A and D are float32
  const void *x, *dt, *B, *C, *z;
  const float *A, *Dskip;
  void* stream;                 // a cudaStream_t
};

// Chunks of time per batch row (the chunk states are [batch, chunks, D, N] floats); 0 when
// the kernels do not handle N (more than 64 states).
int64_t scan_cuda_chunks(int64_t T, int64_t N);

// y [batch, T, D]; the states entering each chunk; last [batch, D, N] (h_T).
void scan_cuda_forward(const ScanCudaCall& call, float* y, float* chunk_states, float* last);

// Gradients, all float32: dx, ddt, dz [batch, T, D] are written; dA [D, N], dD [D] and
// dB, dC [batch, T, N] are added to and must start at zero.
void scan_cuda_backward(const ScanCudaCall& call, const float* grad, const float* chunk_states, float* dx,
                        float* ddt, float* dz, float* dA, float* dD, float* dB, float* dC);

}  // namespace crsm::model
