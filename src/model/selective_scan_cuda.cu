// CUDA kernels of the selective scan: one thread per (batch row, channel), the channel's
// states in registers, time walked in chunks (selective_scan_chunked.h holds the
// arithmetic, shared with the host build that CI tests). Threads of a block are
// consecutive channels of one batch row, so a warp sums dB and dC before one atomic add.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "model/selective_scan_chunked.h"
#include "model/selective_scan_cuda.h"

namespace crsm::model {
namespace {

constexpr int kThreads = 128;  // channels per block: four full warps

struct DeviceAdder {
  __device__ void shared(float* p, float v) const {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if ((threadIdx.x & 31) == 0) atomicAdd(p, v);
  }
  __device__ void own(float* p, float v) const { atomicAdd(p, v); }
};

template <typename In, int kMaxN>
__global__ void forward_kernel(scan::Shape s, scan::Inputs<In> in, scan::ForwardOutputs out) {
  const int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d < s.D) scan::forward_channel<In, kMaxN>(s, in, out, blockIdx.y, d);
}

// Every lane runs, even past the last channel: the warp sums need the whole warp.
template <typename In, int kMaxN>
__global__ void backward_kernel(scan::Shape s, scan::Inputs<In> in, const float* grad, const float* chunk_states,
                                scan::BackwardOutputs g) {
  const int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  scan::backward_channel<In, kMaxN>(s, in, grad, chunk_states, g, blockIdx.y, d, DeviceAdder{});
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("selective scan CUDA ") + what + ": " + cudaGetErrorString(e));
}

template <typename In>
scan::Inputs<In> inputs_of(const ScanCudaCall& c) {
  return {static_cast<const In*>(c.x), static_cast<const In*>(c.dt), static_cast<const In*>(c.B),
          static_cast<const In*>(c.C), static_cast<const In*>(c.z), c.A, c.Dskip};
}

template <int kMaxN>
scan::Shape shape_of(const ScanCudaCall& c) {
  return {c.batch, c.T, c.D, c.N, scan::Plan<kMaxN>::kChunk};
}

// Calls `launch.template run<In, kMaxN>()` for the call's input type and state size.
template <typename Launch>
void dispatch(const ScanCudaCall& c, const Launch& launch) {
  if (c.N > 64) throw std::invalid_argument("selective scan CUDA: d_state " + std::to_string(c.N) + " > 64");
  const bool bf16 = c.input == ScanInput::kBFloat16;
  if (c.N <= 16) bf16 ? launch.template run<__nv_bfloat16, 16>() : launch.template run<float, 16>();
  else bf16 ? launch.template run<__nv_bfloat16, 64>() : launch.template run<float, 64>();
}

dim3 grid_of(const ScanCudaCall& c) {
  return dim3(static_cast<unsigned>((c.D + kThreads - 1) / kThreads), static_cast<unsigned>(c.batch));
}

struct ForwardLaunch {
  const ScanCudaCall& c;
  scan::ForwardOutputs out;
  template <typename In, int kMaxN>
  void run() const {
    forward_kernel<In, kMaxN><<<grid_of(c), kThreads, 0, static_cast<cudaStream_t>(c.stream)>>>(
        shape_of<kMaxN>(c), inputs_of<In>(c), out);
    check_launch("forward");
  }
};

struct BackwardLaunch {
  const ScanCudaCall& c;
  const float *grad, *chunk_states;
  scan::BackwardOutputs g;
  template <typename In, int kMaxN>
  void run() const {
    backward_kernel<In, kMaxN><<<grid_of(c), kThreads, 0, static_cast<cudaStream_t>(c.stream)>>>(
        shape_of<kMaxN>(c), inputs_of<In>(c), grad, chunk_states, g);
    check_launch("backward");
  }
};

}  // namespace

int64_t scan_cuda_chunks(int64_t T, int64_t N) {
  if (N > 64) return 0;
  const int64_t chunk = N <= 16 ? scan::Plan<16>::kChunk : scan::Plan<64>::kChunk;
  return (T + chunk - 1) / chunk;
}

void scan_cuda_forward(const ScanCudaCall& call, float* y, float* chunk_states, float* last) {
  if (call.batch == 0 || call.T == 0 || call.D == 0) return;
  dispatch(call, ForwardLaunch{call, {y, chunk_states, last}});
}

void scan_cuda_backward(const ScanCudaCall& call, const float* grad, const float* chunk_states, float* dx,
                        float* ddt, float* dz, float* dA, float* dD, float* dB, float* dC) {
  if (call.batch == 0 || call.T == 0 || call.D == 0) return;
  dispatch(call, BackwardLaunch{call, grad, chunk_states, {dx, ddt, dz, dA, dD, dB, dC}});
}

}  // namespace crsm::model
