#include "model/parallel_linear.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>

#include "model/autocast_state.h"
#include "model/cpu_kernels.h"

namespace crsm::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ParallelLinear : torch::autograd::Function<ParallelLinear> {
  // x2 [rows, in], weight [out, in], bias [out] or undefined.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x2, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias_in) {
    ctx->save_for_backward({x2, weight});
    ctx->saved_data["bias"] = bias_in.has_value();
    const auto x = x2.detach(), wt = weight.detach().t();
    const auto bias = bias_in ? bias_in->detach() : at::Tensor();
    auto y = at::empty({x.size(0), wt.size(1)}, x.options());
    split_over_threads(x.size(0), 1, [&](int64_t b, int64_t e) {
      auto part = y.narrow(0, b, e - b);
      if (bias.defined()) at::addmm_out(part, bias, x.narrow(0, b, e - b), wt);
      else at::mm_out(part, x.narrow(0, b, e - b), wt);
    });
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto x2 = saved[0].detach(), weight = saved[1].detach();
    const auto gy = grads[0].detach().contiguous();
    auto dx = at::empty_like(x2), dw = at::empty_like(weight);
    split_over_threads(x2.size(0), 1, [&](int64_t b, int64_t e) {
      auto part = dx.narrow(0, b, e - b);
      at::mm_out(part, gy.narrow(0, b, e - b), weight);
    });
    const auto gyt = gy.t();
    split_over_threads(weight.size(0), 1, [&](int64_t b, int64_t e) {
      auto part = dw.narrow(0, b, e - b);
      at::mm_out(part, gyt.narrow(0, b, e - b), x2);
    });
    at::Tensor db;
    if (ctx->saved_data["bias"].toBool()) db = gy.sum(0);
    return {dx, dw, db};
  }
};

// Worth splitting: enough multiply-adds that a thread's share outweighs waking it.
bool worth_sharing(const at::Tensor& x, const at::Tensor& weight) {
  if (!fused_cpu_kernels()) return false;
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat) return false;
  if (at::get_num_threads() < 2 || at::in_parallel_region()) return false;
  if (autocast_enabled(c10::DeviceType::CPU)) return false;
  const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
  return rows >= 64 && rows * weight.size(0) * weight.size(1) >= (int64_t{1} << 18);
}

}  // namespace

at::Tensor parallel_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!worth_sharing(x, weight)) return at::linear(x, weight, bias);
  auto sizes = x.sizes().vec();
  const auto x2 = x.reshape({-1, sizes.back()}).contiguous();
  auto y = ParallelLinear::apply(x2, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt)[0];
  sizes.back() = weight.size(0);
  return y.view(sizes);
}

}  // namespace crsm::model

namespace crsm::model {

at::Tensor parallel_linear(const torch::nn::LinearImpl& layer, const at::Tensor& x) {
  return parallel_linear(x, layer.weight, layer.bias);
}

}  // namespace crsm::model
