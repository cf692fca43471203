// Fused CPU kernels for the selective scan. The work is split into independent
// (batch row, block of channels) items: each walks time once, keeping its block's
// states in a small buffer, so the [batch, T, d_inner, d_state] state tensor is never
// materialised. Backward recomputes the states of its block, then runs time in reverse.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/selective_scan.h"

#if defined(__x86_64__) && defined(__GNUC__)
// One copy of the float kernels for AVX2+FMA machines and one for any x86-64, picked
// at load time: the build stays portable and the fast machines use their vectors.
#define CRSM_CPU_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define CRSM_CPU_CLONES
#endif
#define CRSM_INLINE inline __attribute__((always_inline))

namespace crsm::model {
namespace {

// Channels per work item: enough to amortise the per-step loads of B_t and C_t,
// few enough that batch x blocks gives every thread work.
constexpr int64_t kChannelBlock = 16;

// exp(x) for float written so the compiler can vectorise it (no libm call): split
// x = n*ln2 + r, evaluate a degree-6 polynomial for exp(r) and put n in the exponent.
// Relative error about 2e-7 over the clamped range.
CRSM_INLINE float scan_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float round_shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + round_shift;
  const float n = t - round_shift;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof t_bits);
  const int32_t scale_bits = ((t_bits - 0x4B400000) + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

CRSM_INLINE double scan_exp(double x) { return std::exp(x); }

template <typename S>
CRSM_INLINE S sigmoid(S v) {
  return S(1) / (S(1) + std::exp(-v));
}

template <typename S>
struct ScanArgs {
  int64_t batch, T, D, N, blocks;
  const S *x, *dt, *A, *B, *C, *Dskip, *z;
};

template <typename S>
struct ForwardOut {
  S* out;         // [batch, T, D]
  S* last_state;  // [batch, D, N] or null
};

template <typename S>
struct BackwardOut {
  const S* grad;  // [batch, T, D]
  S *dx, *ddt, *dz;     // [batch, T, D], written
  S *dB_part, *dC_part;  // [blocks, batch, T, N], accumulated per block
  S* dA_part;            // [batch, D, N], accumulated per batch row
  S* dD_part;            // [batch, D]
};

template <typename S>
CRSM_INLINE void forward_items(const ScanArgs<S>& a, const ForwardOut<S>& o, int64_t begin,
                               int64_t end) {
  const int64_t T = a.T, D = a.D, N = a.N;
  std::vector<S> state(kChannelBlock * N);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / a.blocks;
    const int64_t d0 = (item % a.blocks) * kChannelBlock;
    const int64_t d1 = std::min(D, d0 + kChannelBlock);
    std::fill(state.begin(), state.end(), S(0));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = b * T + t;
      const S* Bt = a.B + row * N;
      const S* Ct = a.C + row * N;
      for (int64_t d = d0; d < d1; ++d) {
        const S xv = a.x[row * D + d];
        const S dtv = a.dt[row * D + d];
        const S dtx = dtv * xv;
        const S* Ad = a.A + d * N;
        S* h = state.data() + (d - d0) * N;
        S acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {
          const S hn = scan_exp(dtv * Ad[n]) * h[n] + dtx * Bt[n];
          h[n] = hn;
          acc += Ct[n] * hn;
        }
        const S zv = a.z[row * D + d];
        o.out[row * D + d] = (acc + a.Dskip[d] * xv) * zv * sigmoid(zv);
      }
    }
    if (o.last_state) {
      for (int64_t d = d0; d < d1; ++d)
        std::copy_n(state.data() + (d - d0) * N, N, o.last_state + (b * D + d) * N);
    }
  }
}

template <typename S>
CRSM_INLINE void backward_items(const ScanArgs<S>& a, const BackwardOut<S>& g, int64_t begin,
                                int64_t end) {
  const int64_t T = a.T, D = a.D, N = a.N;
  std::vector<S> states(T * kChannelBlock * N);  // h_t of the block for every t
  std::vector<S> dstate(kChannelBlock * N);      // dL/dh_t carried backwards in time
  const std::vector<S> zeros(N, S(0));           // h_{-1}
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / a.blocks;
    const int64_t block = item % a.blocks;
    const int64_t d0 = block * kChannelBlock;
    const int64_t d1 = std::min(D, d0 + kChannelBlock);
    const int64_t nd = d1 - d0;

    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = b * T + t;
      const S* Bt = a.B + row * N;
      for (int64_t d = d0; d < d1; ++d) {
        const S dtv = a.dt[row * D + d];
        const S dtx = dtv * a.x[row * D + d];
        const S* Ad = a.A + d * N;
        const S* hp = t > 0 ? &states[((t - 1) * nd + (d - d0)) * N] : zeros.data();
        S* h = &states[(t * nd + (d - d0)) * N];
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) h[n] = scan_exp(dtv * Ad[n]) * hp[n] + dtx * Bt[n];
      }
    }

    std::fill(dstate.begin(), dstate.end(), S(0));
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t row = b * T + t;
      const S* Bt = a.B + row * N;
      const S* Ct = a.C + row * N;
      S* dBt = g.dB_part + ((block * a.batch + b) * T + t) * N;
      S* dCt = g.dC_part + ((block * a.batch + b) * T + t) * N;
      for (int64_t d = d0; d < d1; ++d) {
        const int64_t i = row * D + d;
        const S xv = a.x[i], dtv = a.dt[i], zv = a.z[i], go = g.grad[i];
        const S* Ad = a.A + d * N;
        const S* h = &states[(t * nd + (d - d0)) * N];
        const S* hp = t > 0 ? &states[((t - 1) * nd + (d - d0)) * N] : zeros.data();

        S acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) acc += Ct[n] * h[n];
        const S y = acc + a.Dskip[d] * xv;
        const S sig = sigmoid(zv);
        g.dz[i] = go * y * sig * (S(1) + zv * (S(1) - sig));
        const S gy = go * zv * sig;
        g.dD_part[b * D + d] += gy * xv;

        S dxv = gy * a.Dskip[d];
        S ddt = 0;
        S* dh = dstate.data() + (d - d0) * N;
        S* dAd = g.dA_part + (b * D + d) * N;
#pragma omp simd reduction(+ : dxv, ddt)
        for (int64_t n = 0; n < N; ++n) {
          const S dhn = dh[n] + gy * Ct[n];
          dCt[n] += gy * h[n];
          const S decay = scan_exp(dtv * Ad[n]);
          const S g_arg = dhn * hp[n] * decay;  // dL/d(dt*A)
          ddt += g_arg * Ad[n] + dhn * Bt[n] * xv;
          dAd[n] += g_arg * dtv;
          dBt[n] += dhn * dtv * xv;
          dxv += dhn * dtv * Bt[n];
          dh[n] = dhn * decay;
        }
        g.dx[i] = dxv;
        g.ddt[i] = ddt;
      }
    }
  }
}

CRSM_CPU_CLONES void run_forward(const ScanArgs<float>& a, const ForwardOut<float>& o,
                                 int64_t begin, int64_t end) {
  forward_items(a, o, begin, end);
}
void run_forward(const ScanArgs<double>& a, const ForwardOut<double>& o, int64_t begin,
                 int64_t end) {
  forward_items(a, o, begin, end);
}
CRSM_CPU_CLONES void run_backward(const ScanArgs<float>& a, const BackwardOut<float>& g,
                                  int64_t begin, int64_t end) {
  backward_items(a, g, begin, end);
}
void run_backward(const ScanArgs<double>& a, const BackwardOut<double>& g, int64_t begin,
                  int64_t end) {
  backward_items(a, g, begin, end);
}

struct Inputs {
  at::Tensor x, dt, A, B, C, D, z;
  int64_t batch, T, Dn, N, blocks;
};

Inputs check_inputs(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                    const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                    const at::Tensor& z) {
  TORCH_CHECK(x.dim() == 3, "selective_scan: x must be [batch, T, d_inner], got ", x.sizes());
  const int64_t batch = x.size(0), T = x.size(1), Dn = x.size(2);
  TORCH_CHECK(A.dim() == 2 && A.size(0) == Dn, "selective_scan: A must be [", Dn,
              ", d_state], got ", A.sizes());
  const int64_t N = A.size(1);
  TORCH_CHECK(dt.sizes() == x.sizes(), "selective_scan: dt ", dt.sizes(), " != x ", x.sizes());
  TORCH_CHECK(z.sizes() == x.sizes(), "selective_scan: z ", z.sizes(), " != x ", x.sizes());
  const std::vector<int64_t> bc{batch, T, N};
  TORCH_CHECK(B.sizes() == at::IntArrayRef(bc), "selective_scan: B must be ", bc, ", got ",
              B.sizes());
  TORCH_CHECK(C.sizes() == at::IntArrayRef(bc), "selective_scan: C must be ", bc, ", got ",
              C.sizes());
  TORCH_CHECK(D.dim() == 1 && D.size(0) == Dn, "selective_scan: D must be [", Dn, "], got ",
              D.sizes());
  for (const auto* t : {&dt, &A, &B, &C, &D, &z}) {
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->device() == x.device(),
                "selective_scan: all inputs must share x's dtype and device");
  }
  TORCH_CHECK(x.device().is_cpu(), "selective_scan: the fused kernel runs on CPU tensors only");
  return {x.contiguous(), dt.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
          D.contiguous(), z.contiguous(), batch, T, Dn, N,
          (Dn + kChannelBlock - 1) / kChannelBlock};
}

template <typename S>
ScanArgs<S> args_of(const Inputs& in) {
  return {in.batch,           in.T,          in.Dn,         in.N,
          in.blocks,          in.x.data_ptr<S>(), in.dt.data_ptr<S>(), in.A.data_ptr<S>(),
          in.B.data_ptr<S>(), in.C.data_ptr<S>(), in.D.data_ptr<S>(), in.z.data_ptr<S>()};
}

}  // namespace

at::Tensor selective_scan_fused_forward(const at::Tensor& x, const at::Tensor& dt,
                                        const at::Tensor& A, const at::Tensor& B,
                                        const at::Tensor& C, const at::Tensor& D,
                                        const at::Tensor& z, at::Tensor* final_state) {
  const Inputs in = check_inputs(x, dt, A, B, C, D, z);
  at::Tensor out = at::empty({in.batch, in.T, in.Dn}, in.x.options());
  at::Tensor last;
  if (final_state) last = at::empty({in.batch, in.Dn, in.N}, in.x.options());
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "selective_scan_fused_forward", [&] {
    const auto a = args_of<scalar_t>(in);
    const ForwardOut<scalar_t> o{out.data_ptr<scalar_t>(),
                                 final_state ? last.data_ptr<scalar_t>() : nullptr};
    at::parallel_for(0, in.batch * in.blocks, 1,
                     [&](int64_t begin, int64_t end) { run_forward(a, o, begin, end); });
  });
  if (final_state) *final_state = last;
  return out;
}

std::vector<at::Tensor> selective_scan_fused_backward(const at::Tensor& grad_out,
                                                      const at::Tensor& x, const at::Tensor& dt,
                                                      const at::Tensor& A, const at::Tensor& B,
                                                      const at::Tensor& C, const at::Tensor& D,
                                                      const at::Tensor& z) {
  const Inputs in = check_inputs(x, dt, A, B, C, D, z);
  TORCH_CHECK(grad_out.sizes() == in.x.sizes(), "selective_scan backward: grad ",
              grad_out.sizes(), " != output ", in.x.sizes());
  const at::Tensor grad = grad_out.to(in.x.scalar_type()).contiguous();
  const auto opts = in.x.options();
  at::Tensor dx = at::empty_like(in.x), ddt = at::empty_like(in.x), dz = at::empty_like(in.x);
  at::Tensor dB_part = at::zeros({in.blocks, in.batch, in.T, in.N}, opts);
  at::Tensor dC_part = at::zeros({in.blocks, in.batch, in.T, in.N}, opts);
  at::Tensor dA_part = at::zeros({in.batch, in.Dn, in.N}, opts);
  at::Tensor dD_part = at::zeros({in.batch, in.Dn}, opts);
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "selective_scan_fused_backward", [&] {
    const auto a = args_of<scalar_t>(in);
    const BackwardOut<scalar_t> g{grad.data_ptr<scalar_t>(),    dx.data_ptr<scalar_t>(),
                                  ddt.data_ptr<scalar_t>(),     dz.data_ptr<scalar_t>(),
                                  dB_part.data_ptr<scalar_t>(), dC_part.data_ptr<scalar_t>(),
                                  dA_part.data_ptr<scalar_t>(), dD_part.data_ptr<scalar_t>()};
    at::parallel_for(0, in.batch * in.blocks, 1,
                     [&](int64_t begin, int64_t end) { run_backward(a, g, begin, end); });
  });
  return {dx, ddt, dA_part.sum(0), dB_part.sum(0), dC_part.sum(0), dD_part.sum(0), dz};
}

}  // namespace crsm::model
