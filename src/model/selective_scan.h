#pragma once

// The selective scan of Mamba (SPEC §3), for one layer, all channels at once:
//
//   h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t        (per channel d, state n)
//   y_t = (sum_n C_t * h_t + D * x_t) * silu(z_t)
//
// Shapes: x, dt, z [batch, T, d_inner]; A [d_inner, d_state]; B, C [batch, T, d_state];
// D [d_inner]. Output [batch, T, d_inner]. The state starts at zero.

#include <ATen/core/Tensor.h>

namespace crsm::model {

// The scan used by the model: the fused CPU kernel (custom autograd function) for CPU
// tensors; on CUDA tensors the CUDA kernels (selective_scan_cuda.h) where they were built
// and LibTorch has CUDA, else the reference. When final_state is given it receives
// h_T [batch, d_inner, d_state] (no gradient), which seeds recurrent decoding.
at::Tensor selective_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                          const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                          const at::Tensor& z, at::Tensor* final_state = nullptr);

// Whether selective_scan() runs the CUDA kernels on CUDA tensors in this build (they and
// a CUDA LibTorch were found), rather than falling back to the reference.
bool cuda_scan_built();

// Plain reference: one tensor expression per time step, differentiated by autograd.
// Works on every device and dtype; slow. Kept to check the fused kernel against.
at::Tensor selective_scan_reference(const at::Tensor& x, const at::Tensor& dt,
                                    const at::Tensor& A, const at::Tensor& B,
                                    const at::Tensor& C, const at::Tensor& D,
                                    const at::Tensor& z, at::Tensor* final_state = nullptr);

// The fused CPU kernels themselves (float and double), without autograd. Inputs are
// made contiguous. Backward recomputes the states rather than storing them and
// returns the gradients {dx, ddt, dA, dB, dC, dD, dz}.
at::Tensor selective_scan_fused_forward(const at::Tensor& x, const at::Tensor& dt,
                                        const at::Tensor& A, const at::Tensor& B,
                                        const at::Tensor& C, const at::Tensor& D,
                                        const at::Tensor& z, at::Tensor* final_state = nullptr);

std::vector<at::Tensor> selective_scan_fused_backward(const at::Tensor& grad_out,
                                                      const at::Tensor& x, const at::Tensor& dt,
                                                      const at::Tensor& A, const at::Tensor& B,
                                                      const at::Tensor& C, const at::Tensor& D,
                                                      const at::Tensor& z);

}  // namespace crsm::model
