#include "model/selective_scan.h"

#include <torch/torch.h>

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

}  // namespace

at::Tensor selective_scan(const at::Tensor& x_in, const at::Tensor& dt_in, const at::Tensor& A,
                          const at::Tensor& B_in, const at::Tensor& C_in, const at::Tensor& D,
                          const at::Tensor& z_in, at::Tensor* final_state) {
  // The recurrence runs in float32 whatever autocast made of its inputs: a long product
  // of decays in bfloat16 would lose the state.
  const auto f32 = [](const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); };
  const auto x = f32(x_in), dt = f32(dt_in), B = f32(B_in), C = f32(C_in), z = f32(z_in);
  if (!x.device().is_cpu()) return selective_scan_reference(x, dt, A, B, C, D, z, final_state);
  auto out = FusedScanFunction::apply(x, dt, A, B, C, D, z);
  if (final_state) *final_state = out[1];
  return out[0];
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
