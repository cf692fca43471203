// The fused causal convolution with SiLU on the CPU. Rows (batch, time) are independent
// in forward and in the input's gradient, so both split rows over the threads; the
// weight and bias gradients sum over rows, so they split channels. Inner loops run
// along the channels, which are contiguous.
#include "model/causal_conv.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "model/cpu_kernels.h"

namespace crsm::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <typename S>
struct Conv {
  int64_t batch, T, C, K;
  const S* x;
  int64_t batch_stride, time_stride;  // of x; its channels are contiguous
  const S* taps;                      // [K][C]: weight transposed
  const S* bias;                      // [C]
};

// The pre-activation of row r (= b * T + t) into a[0, C).
template <typename S>
void preactivation(const Conv<S>& v, int64_t r, S* a) {
  const int64_t b = r / v.T, t = r % v.T;
  for (int64_t c = 0; c < v.C; ++c) a[c] = v.bias[c];
  for (int64_t k = 0; k < v.K; ++k) {
    const int64_t src = t - (v.K - 1) + k;
    if (src < 0) continue;
    const S* xs = v.x + b * v.batch_stride + src * v.time_stride;
    const S* w = v.taps + k * v.C;
    for (int64_t c = 0; c < v.C; ++c) a[c] += w[c] * xs[c];
  }
}

template <typename S>
S sigmoid(S a) {
  return S(1) / (S(1) + std::exp(-a));
}

template <typename S>
void forward_rows(const Conv<S>& v, S* out, int64_t begin, int64_t end) {
  std::vector<S> a(v.C);
  for (int64_t r = begin; r < end; ++r) {
    preactivation(v, r, a.data());
    S* o = out + r * v.C;
    for (int64_t c = 0; c < v.C; ++c) o[c] = a[c] * sigmoid(a[c]);
  }
}

// dL/da for every row, from dL/dout.
template <typename S>
void activation_grad_rows(const Conv<S>& v, const S* grad, S* da, int64_t begin, int64_t end) {
  std::vector<S> a(v.C);
  for (int64_t r = begin; r < end; ++r) {
    preactivation(v, r, a.data());
    const S* g = grad + r * v.C;
    S* d = da + r * v.C;
    for (int64_t c = 0; c < v.C; ++c) {
      const S s = sigmoid(a[c]);
      d[c] = g[c] * s * (S(1) + a[c] * (S(1) - s));
    }
  }
}

// dL/dx[b, t] = sum_k da[b, t + K - 1 - k] * weight[k].
template <typename S>
void input_grad_rows(const Conv<S>& v, const S* da, S* dx, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t t = r % v.T;
    S* d = dx + r * v.C;
    for (int64_t c = 0; c < v.C; ++c) d[c] = 0;
    for (int64_t k = 0; k < v.K; ++k) {
      const int64_t dst = t + v.K - 1 - k;
      if (dst >= v.T) continue;
      const S* g = da + (r + v.K - 1 - k) * v.C;
      const S* w = v.taps + k * v.C;
      for (int64_t c = 0; c < v.C; ++c) d[c] += g[c] * w[c];
    }
  }
}

// dL/dweight[c, k] and dL/dbias[c] for channels [c0, c1): sums over every row.
template <typename S>
void parameter_grads(const Conv<S>& v, const S* da, S* dtaps, S* dbias, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) dbias[c] = 0;
  for (int64_t k = 0; k < v.K; ++k)
    for (int64_t c = c0; c < c1; ++c) dtaps[k * v.C + c] = 0;
  for (int64_t r = 0; r < v.batch * v.T; ++r) {
    const int64_t b = r / v.T, t = r % v.T;
    const S* g = da + r * v.C;
    for (int64_t c = c0; c < c1; ++c) dbias[c] += g[c];
    for (int64_t k = 0; k < v.K; ++k) {
      const int64_t src = t - (v.K - 1) + k;
      if (src < 0) continue;
      const S* xs = v.x + b * v.batch_stride + src * v.time_stride;
      S* dw = dtaps + k * v.C;
      for (int64_t c = c0; c < c1; ++c) dw[c] += g[c] * xs[c];
    }
  }
}

template <typename S>
Conv<S> view_of(const at::Tensor& x, const at::Tensor& taps, const at::Tensor& bias) {
  return {x.size(0),      x.size(1), x.size(2), taps.size(0), x.data_ptr<S>(), x.stride(0), x.stride(1),
          taps.data_ptr<S>(), bias.data_ptr<S>()};
}

// Channels split over the threads whole cache lines apart.
constexpr int64_t kChannelsPerLine = 16;

struct FusedConvFunction : torch::autograd::Function<FusedConvFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& weight,
                               const at::Tensor& bias_in) {
    ctx->save_for_backward({x_in, weight, bias_in});
    const auto x = x_in.stride(2) == 1 ? x_in.detach() : x_in.detach().contiguous();
    const auto taps = weight.detach().reshape({weight.size(0), -1}).t().contiguous();
    const auto bias = bias_in.detach().contiguous();
    auto out = at::empty({x.size(0), x.size(1), x.size(2)}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv_silu", [&] {
      const auto v = view_of<scalar_t>(x, taps, bias);
      at::parallel_for(0, v.batch * v.T, 16, [&](int64_t b, int64_t e) { forward_rows(v, out.data_ptr<scalar_t>(), b, e); });
    });
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto x = saved[0].stride(2) == 1 ? saved[0].detach() : saved[0].detach().contiguous();
    const auto& weight = saved[1];
    const auto taps = weight.detach().reshape({weight.size(0), -1}).t().contiguous();
    const auto bias = saved[2].detach().contiguous();
    const auto grad = grads[0].detach().contiguous();
    auto da = at::empty_like(grad), dx = at::empty_like(grad);
    auto dtaps = at::empty_like(taps), dbias = at::empty_like(bias);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv_silu_backward", [&] {
      const auto v = view_of<scalar_t>(x, taps, bias);
      const int64_t rows = v.batch * v.T;
      at::parallel_for(0, rows, 16, [&](int64_t b, int64_t e) {
        activation_grad_rows(v, grad.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(), b, e);
      });
      at::parallel_for(0, rows, 16, [&](int64_t b, int64_t e) {
        input_grad_rows(v, da.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), b, e);
      });
      split_over_threads(v.C, kChannelsPerLine, [&](int64_t c0, int64_t c1) {
        parameter_grads(v, da.data_ptr<scalar_t>(), dtaps.data_ptr<scalar_t>(), dbias.data_ptr<scalar_t>(), c0, c1);
      });
    });
    return {dx, dtaps.t().reshape(weight.sizes()), dbias};
  }
};

}  // namespace

at::Tensor causal_conv_silu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const auto t = x.scalar_type();
  const bool fused = fused_cpu_kernels() && x.is_cpu() && (t == at::kFloat || t == at::kDouble) && weight.scalar_type() == t &&
                     bias.scalar_type() == t && x.dim() == 3;
  if (!fused) return causal_conv_silu_reference(x, weight, bias);
  return FusedConvFunction::apply(x, weight, bias)[0];
}

at::Tensor causal_conv_silu_reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t T = x.size(1), K = weight.size(-1);
  const at::Tensor padded = torch::constant_pad_nd(x, {0, 0, K - 1, 0});
  const at::Tensor w = weight.reshape({weight.size(0), K});  // [channels, K]
  at::Tensor a = bias.expand_as(x);
  for (int64_t k = 0; k < K; ++k) a = a + padded.narrow(1, k, T) * w.select(1, k);
  return torch::silu(a);
}

}  // namespace crsm::model
