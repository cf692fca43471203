// Fused CPU kernels for the selective scan. Forward splits the work into independent
// (batch row, block of kBlock channels) items: each walks time once, keeping its block's
// states in a small buffer, so the [batch, T, d_inner, d_state] state tensor is never
// materialised. Inner loops run across the block's channels with a trip count known at
// compile time, so they vectorise without reductions across lanes. Backward takes (batch
// row, group of blocks) items: for each block it recomputes the states and each step's
// readout sum_n C h (whose chain of adds hides behind the exponentials there), then runs
// time in reverse; dB and dC, sums over channels, are summed lane by lane across the group's
// blocks and across lanes once per group, not once per block.
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
// One copy of the float kernels for AVX2 machines and one for any x86-64, picked at
// load time by CPU feature: the build stays portable and fast machines use their vectors.
#define CRSM_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CRSM_CPU_CLONES
#endif
#define CRSM_INLINE inline __attribute__((always_inline))

namespace crsm::model {
namespace {

// Channels per work item: two AVX2 vectors of floats.
constexpr int64_t kBlock = 16;

// exp(x) for float written so the compiler can vectorise it (no libm call): split
// x = n*ln2 + r, evaluate a degree-6 polynomial for exp(r) and put n in the exponent.
// Relative error about 2e-7 over the clamped range.
CRSM_INLINE float scan_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
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
  return S(1) / (S(1) + scan_exp(-v));
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
  S *dB_part, *dC_part;  // [groups, batch, T, N]: each group's share, summed afterwards
  S* dA_part;            // [batch, D, N]: each batch row's share
  S* dD_part;            // [batch, D]
  int64_t groups;        // of blocks per batch row
};

// Copies one block's values into kBlock lanes; lanes past the last channel get zero,
// which keeps their states at zero (dt = x = 0) and their gradients at zero (grad = 0).
template <typename S>
CRSM_INLINE void load_lanes(const S* src, int64_t width, S* dst) {
  if (width == kBlock) {
    std::memcpy(dst, src, sizeof(S) * kBlock);  // the common case, as one vector load
    return;
  }
  for (int64_t j = 0; j < kBlock; ++j) dst[j] = j < width ? src[j] : S(0);
}

// The block's A as [d_state][kBlock], so the inner loops read it contiguously.
template <typename S>
CRSM_INLINE void load_decay(const ScanArgs<S>& a, int64_t d0, int64_t width, S* A) {
  for (int64_t n = 0; n < a.N; ++n)
    for (int64_t j = 0; j < kBlock; ++j) A[n * kBlock + j] = j < width ? a.A[(d0 + j) * a.N + n] : S(0);
}

template <typename S>
CRSM_INLINE void forward_items(const ScanArgs<S>& a, const ForwardOut<S>& o, int64_t begin,
                               int64_t end) {
  const int64_t T = a.T, D = a.D, N = a.N;
  std::vector<S> h(N * kBlock), A(N * kBlock);
  alignas(64) S x[kBlock], dt[kBlock], xdt[kBlock], z[kBlock], Dskip[kBlock], acc[kBlock], y[kBlock];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / a.blocks;
    const int64_t d0 = (item % a.blocks) * kBlock;
    const int64_t width = std::min(kBlock, D - d0);
    load_decay(a, d0, width, A.data());
    load_lanes(a.Dskip + d0, width, Dskip);
    std::fill(h.begin(), h.end(), S(0));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = b * T + t;
      const int64_t base = row * D + d0;
      load_lanes(a.x + base, width, x);
      load_lanes(a.dt + base, width, dt);
      for (int64_t j = 0; j < kBlock; ++j) {
        xdt[j] = x[j] * dt[j];
        acc[j] = 0;
      }
      for (int64_t n = 0; n < N; ++n) {
        const S bn = a.B[row * N + n], cn = a.C[row * N + n];
        S* hn = &h[n * kBlock];
        const S* An = &A[n * kBlock];
        for (int64_t j = 0; j < kBlock; ++j) {
          hn[j] = scan_exp(dt[j] * An[j]) * hn[j] + xdt[j] * bn;
          acc[j] += cn * hn[j];
        }
      }
      load_lanes(a.z + base, width, z);
      for (int64_t j = 0; j < kBlock; ++j) y[j] = (acc[j] + Dskip[j] * x[j]) * z[j] * sigmoid(z[j]);
      std::copy_n(y, width, o.out + base);
    }
    if (o.last_state) {
      for (int64_t j = 0; j < width; ++j)
        for (int64_t n = 0; n < N; ++n) o.last_state[(b * D + d0 + j) * N + n] = h[n * kBlock + j];
    }
  }
}

template <typename S>
CRSM_INLINE void backward_items(const ScanArgs<S>& a, const BackwardOut<S>& g, int64_t begin,
                                int64_t end) {
  const int64_t T = a.T, D = a.D, N = a.N, NB = N * kBlock;
  std::vector<S> states(T * NB);  // h_t of the block for every t: [T][N][kBlock]
  std::vector<S> decays(T * NB);  // exp(dt_t * A), kept from the recompute pass
  std::vector<S> readout(T * kBlock);  // sum_n C_t h_t per channel: y_t before D x_t and the gate
  std::vector<S> dstate(NB);      // dL/dh carried backwards in time
  std::vector<S> A(NB), dA(NB);
  std::vector<S> dB_lanes(T * NB), dC_lanes(T * NB);  // the group's dB, dC per lane: [T][N][kBlock]
  const std::vector<S> zeros(NB, S(0));  // h_{-1}
  alignas(64) S x[kBlock], dt[kBlock], xdt[kBlock], z[kBlock], go[kBlock], Dskip[kBlock];
  alignas(64) S acc[kBlock], gy[kBlock], dx[kBlock], ddt[kBlock], dz[kBlock], dD[kBlock];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / g.groups;
    const int64_t group = item % g.groups;
    std::fill(dB_lanes.begin(), dB_lanes.end(), S(0));
    std::fill(dC_lanes.begin(), dC_lanes.end(), S(0));
    for (int64_t block = a.blocks * group / g.groups; block < a.blocks * (group + 1) / g.groups; ++block) {
      const int64_t d0 = block * kBlock;
      const int64_t width = std::min(kBlock, D - d0);
      load_decay(a, d0, width, A.data());
      load_lanes(a.Dskip + d0, width, Dskip);

      for (int64_t t = 0; t < T; ++t) {
        const int64_t row = b * T + t;
        load_lanes(a.x + row * D + d0, width, x);
        load_lanes(a.dt + row * D + d0, width, dt);
        for (int64_t j = 0; j < kBlock; ++j) xdt[j] = x[j] * dt[j];
        const S* hp = t > 0 ? &states[(t - 1) * NB] : zeros.data();
        S* ht = &states[t * NB];
        S* et = &decays[t * NB];
        std::fill(acc, acc + kBlock, S(0));
        for (int64_t n = 0; n < N; ++n) {
          const S bn = a.B[row * N + n], cn = a.C[row * N + n];
          for (int64_t j = 0; j < kBlock; ++j) {
            const int64_t k = n * kBlock + j;
            et[k] = scan_exp(dt[j] * A[k]);
            ht[k] = et[k] * hp[k] + xdt[j] * bn;
            acc[j] += cn * ht[k];
          }
        }
        std::copy_n(acc, kBlock, &readout[t * kBlock]);
      }

      std::fill(dstate.begin(), dstate.end(), S(0));
      std::fill(dA.begin(), dA.end(), S(0));
      std::fill(dD, dD + kBlock, S(0));
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t row = b * T + t;
        const int64_t base = row * D + d0;
        load_lanes(a.x + base, width, x);
        load_lanes(a.dt + base, width, dt);
        load_lanes(a.z + base, width, z);
        load_lanes(g.grad + base, width, go);
        const S* ht = &states[t * NB];
        const S* et = &decays[t * NB];
        const S* hp = t > 0 ? &states[(t - 1) * NB] : zeros.data();
        const S* yt = &readout[t * kBlock];
        for (int64_t j = 0; j < kBlock; ++j) {
          const S y = yt[j] + Dskip[j] * x[j];
          const S sig = sigmoid(z[j]);
          dz[j] = go[j] * y * sig * (S(1) + z[j] * (S(1) - sig));
          gy[j] = go[j] * z[j] * sig;
          dD[j] += gy[j] * x[j];
          dx[j] = gy[j] * Dskip[j];
          ddt[j] = 0;
        }
        for (int64_t n = 0; n < N; ++n) {
          const S bn = a.B[row * N + n], cn = a.C[row * N + n];
          const S* An = &A[n * kBlock];
          S* dh = &dstate[n * kBlock];
          S* dAn = &dA[n * kBlock];
          S* dBn = &dB_lanes[(t * N + n) * kBlock];
          S* dCn = &dC_lanes[(t * N + n) * kBlock];
#pragma omp simd
          for (int64_t j = 0; j < kBlock; ++j) {
            const S dhn = dh[j] + gy[j] * cn;  // dL/dh_t
            dCn[j] += gy[j] * ht[n * kBlock + j];
            const S decay = et[n * kBlock + j];
            const S g_arg = dhn * hp[n * kBlock + j] * decay;  // dL/d(dt*A)
            ddt[j] += g_arg * An[j] + dhn * bn * x[j];
            dAn[j] += g_arg * dt[j];
            dBn[j] += dhn * dt[j] * x[j];
            dx[j] += dhn * dt[j] * bn;
            dh[j] = dhn * decay;  // dL/dh_{t-1} through the recurrence
          }
        }
        std::copy_n(dx, width, g.dx + base);
        std::copy_n(ddt, width, g.ddt + base);
        std::copy_n(dz, width, g.dz + base);
      }
      for (int64_t j = 0; j < width; ++j) {
        g.dD_part[b * D + d0 + j] = dD[j];
        for (int64_t n = 0; n < N; ++n) g.dA_part[(b * D + d0 + j) * N + n] = dA[n * kBlock + j];
      }
    }
    // Lanes past the last channel hold zeros: summing all kBlock of them is exact.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        const S* dBn = &dB_lanes[(t * N + n) * kBlock];
        const S* dCn = &dC_lanes[(t * N + n) * kBlock];
        S sum_dB = 0, sum_dC = 0;
#pragma omp simd reduction(+ : sum_dB, sum_dC)
        for (int64_t j = 0; j < kBlock; ++j) {
          sum_dB += dBn[j];
          sum_dC += dCn[j];
        }
        g.dB_part[((group * a.batch + b) * T + t) * N + n] = sum_dB;
        g.dC_part[((group * a.batch + b) * T + t) * N + n] = sum_dC;
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
          (Dn + kBlock - 1) / kBlock};
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
  // As many groups of blocks per batch row as keep every thread busy; inside a parallel
  // region the work runs on this thread alone.
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t groups = std::min<int64_t>(in.blocks, (threads + in.batch - 1) / in.batch);
  at::Tensor dB_part = at::empty({groups, in.batch, in.T, in.N}, opts);
  at::Tensor dC_part = at::empty({groups, in.batch, in.T, in.N}, opts);
  at::Tensor dA_part = at::empty({in.batch, in.Dn, in.N}, opts);
  at::Tensor dD_part = at::empty({in.batch, in.Dn}, opts);
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "selective_scan_fused_backward", [&] {
    const auto a = args_of<scalar_t>(in);
    const BackwardOut<scalar_t> g{grad.data_ptr<scalar_t>(),    dx.data_ptr<scalar_t>(),
                                  ddt.data_ptr<scalar_t>(),     dz.data_ptr<scalar_t>(),
                                  dB_part.data_ptr<scalar_t>(), dC_part.data_ptr<scalar_t>(),
                                  dA_part.data_ptr<scalar_t>(), dD_part.data_ptr<scalar_t>(), groups};
    at::parallel_for(0, in.batch * groups, 1,
                     [&](int64_t begin, int64_t end) { run_backward(a, g, begin, end); });
  });
  return {dx, ddt, dA_part.sum(0), dB_part.sum(0), dC_part.sum(0), dD_part.sum(0), dz};
}

}  // namespace crsm::model
