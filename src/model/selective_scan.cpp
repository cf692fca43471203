#include "model/selective_scan.h"

#include <torch/torch.h>

#if defined(CRSM_TORCH_CUDA) && defined(CRSM_HAVE_CUDA_SCAN)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "model/selective_scan_cuda.h"
#define CRSM_CUDA_SCAN 1
#endif

namespace crsm::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Wraps the fused kernels as one autograd node. Outputs {y, h_T}; h_T carries no
// gradient (it only seeds recurrent decoding).
struct FusedScanFunction : torch::autograd::Function<FusedScanFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& dt,
                               const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                               const at::Tensor& D, const at::Tensor& z) {
    at::Tensor last;
    at::Tensor y = selective_scan_fused_forward(x, dt, A, B, C, D, z, &last);
    ctx->save_for_backward({x, dt, A, B, C, D, z});
    ctx->mark_non_differentiable({last});
    return {y, last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    return selective_scan_fused_backward(grads[0], s[0], s[1], s[2], s[3], s[4], s[5], s[6]);
  }
};

#ifdef CRSM_CUDA_SCAN
// The CUDA kernels as one autograd node: forward keeps only the states entering each
// chunk of time, backward recomputes the rest (selective_scan_chunked.h). x, dt, B, C, z
// may be float32 or bfloat16 (autocast); A, D, the state and the gradients' sums are
// float32, and each gradient is returned in its input's dtype.
ScanCudaCall cuda_call(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& C, const at::Tensor& D, const at::Tensor& z) {
  return {x.size(0), x.size(1), x.size(2), A.size(1),
          x.scalar_type() == at::kBFloat16 ? ScanInput::kBFloat16 : ScanInput::kFloat32,
          x.data_ptr(), dt.data_ptr(), B.data_ptr(), C.data_ptr(), z.data_ptr(), A.data_ptr<float>(),
          D.data_ptr<float>(), at::cuda::getCurrentCUDAStream(x.device().index()).stream()};
}

struct CudaScanFunction : torch::autograd::Function<CudaScanFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                               const at::Tensor& B, const at::Tensor& C, const at::Tensor& D, const at::Tensor& z) {
    const c10::cuda::CUDAGuard guard(x.device());
    const auto call = cuda_call(x, dt, A, B, C, D, z);
    const auto f32 = x.options().dtype(at::kFloat);
    auto y = at::empty({call.batch, call.T, call.D}, f32);
    auto states = at::empty({call.batch, scan_cuda_chunks(call.T, call.N), call.D, call.N}, f32);
    auto last = at::empty({call.batch, call.D, call.N}, f32);
    scan_cuda_forward(call, y.data_ptr<float>(), states.data_ptr<float>(), last.data_ptr<float>());
    ctx->save_for_backward({x, dt, A, B, C, D, z, states});
    ctx->mark_non_differentiable({last});
    return {y, last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x = s[0], &dt = s[1], &A = s[2], &B = s[3], &C = s[4], &D = s[5], &z = s[6];
    const c10::cuda::CUDAGuard guard(x.device());
    const auto grad = grads[0].to(at::kFloat).contiguous();
    const auto f32 = x.options().dtype(at::kFloat);
    auto dx = at::empty(x.sizes(), f32), ddt = at::empty(x.sizes(), f32), dz = at::empty(x.sizes(), f32);
    auto dA = at::zeros(A.sizes(), f32), dD = at::zeros(D.sizes(), f32);
    auto dB = at::zeros(B.sizes(), f32), dC = at::zeros(C.sizes(), f32);
    scan_cuda_backward(cuda_call(x, dt, A, B, C, D, z), grad.data_ptr<float>(), s[7].data_ptr<float>(),
                       dx.data_ptr<float>(), ddt.data_ptr<float>(), dz.data_ptr<float>(), dA.data_ptr<float>(),
                       dD.data_ptr<float>(), dB.data_ptr<float>(), dC.data_ptr<float>());
    const auto as = [](const at::Tensor& g, const at::Tensor& like) { return g.to(like.scalar_type()); };
    return {as(dx, x), as(ddt, dt), dA, as(dB, B), as(dC, C), dD, as(dz, z)};
  }
};

// The kernels take float32 or bfloat16 activations (all alike), float32 parameters, and
// at most 64 states.
bool cuda_scan_takes(const at::Tensor& x, const at::Tensor& A) {
  const auto t = x.scalar_type();
  return x.is_cuda() && (t == at::kFloat || t == at::kBFloat16) && A.scalar_type() == at::kFloat &&
         scan_cuda_chunks(x.size(1), A.size(1)) > 0;
}
#endif

}  // namespace

at::Tensor selective_scan(const at::Tensor& x_in, const at::Tensor& dt_in, const at::Tensor& A,
                          const at::Tensor& B_in, const at::Tensor& C_in, const at::Tensor& D,
                          const at::Tensor& z_in, at::Tensor* final_state) {
#ifdef CRSM_CUDA_SCAN
  if (cuda_scan_takes(x_in, A)) {
    // One activation dtype for the kernel: autocast may have left some in float32.
    const auto like_x = [&](const at::Tensor& t) { return t.to(x_in.scalar_type()).contiguous(); };
    auto out = CudaScanFunction::apply(x_in.contiguous(), like_x(dt_in), A.contiguous(), like_x(B_in), like_x(C_in),
                                       D.to(at::kFloat).contiguous(), like_x(z_in));
    if (final_state) *final_state = out[1];
    return out[0];
  }
#endif
  // The recurrence runs in float32 whatever autocast made of its inputs: a long product
  // of decays in bfloat16 would lose the state.
  const auto f32 = [](const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); };
  const auto x = f32(x_in), dt = f32(dt_in), B = f32(B_in), C = f32(C_in), z = f32(z_in);
  if (!x.device().is_cpu()) return selective_scan_reference(x, dt, A, B, C, D, z, final_state);
  auto out = FusedScanFunction::apply(x, dt, A, B, C, D, z);
  if (final_state) *final_state = out[1];
  return out[0];
}

bool cuda_scan_built() {
#ifdef CRSM_CUDA_SCAN
  return true;
#else
  return false;
#endif
}

at::Tensor selective_scan_reference(const at::Tensor& x, const at::Tensor& dt,
                                    const at::Tensor& A, const at::Tensor& B,
                                    const at::Tensor& C, const at::Tensor& D,
                                    const at::Tensor& z, at::Tensor* final_state) {
  const int64_t batch = x.size(0), T = x.size(1);
  at::Tensor h = torch::zeros({batch, x.size(2), A.size(1)}, x.options());
  std::vector<at::Tensor> ys;
  ys.reserve(T);
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor dt_t = dt.select(1, t).unsqueeze(-1);  // [batch, D, 1]
    const at::Tensor x_t = x.select(1, t);                  // [batch, D]
    h = torch::exp(dt_t * A) * h + dt_t * B.select(1, t).unsqueeze(1) * x_t.unsqueeze(-1);
    ys.push_back((h * C.select(1, t).unsqueeze(1)).sum(-1) + D * x_t);
  }
  if (final_state) *final_state = h.detach();
  return torch::stack(ys, 1) * torch::silu(z);
}

}  // namespace crsm::model
