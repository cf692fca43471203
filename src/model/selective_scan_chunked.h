#pragma once

// The selective scan (SPEC §3) for one (batch row, channel) at a time, walking time in
// chunks: the arithmetic of the CUDA kernels (selective_scan_cuda.cu, one thread per
// channel), written once so that it compiles for the host as well, where CI checks it
// against selective_scan_reference without a GPU.
//
// Forward keeps the channel's d_state states in registers, writes y and, at the start of
// every chunk, the state (so nothing of size [batch, T, d_inner, d_state] is ever
// stored). Backward walks the chunks in reverse: it recomputes the chunk's states from
// the one stored at its start, then runs the chunk's steps backwards, carrying dL/dh
// across chunks. The state and every sum are float32 whatever the inputs are.
//
// Sums go through an Adder: `shared(p, v)` for a sum over channels (dB, dC: every lane
// of a warp adds to the same place), `own(p, v)` for a channel's own sum over batch rows
// (dA, dD). On the host both are plain additions; on the device `shared` is a warp sum
// and one atomic add per warp, which every lane of the warp must call together: a lane
// past the last channel (`d >= D`) still runs the loops, with zero inputs, and writes
// nothing.

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#define CRSM_HD __host__ __device__
#else
#define CRSM_HD
#endif

namespace crsm::model::scan {

// State sizes one kernel instance handles and the chunk length that goes with them:
// the chunk's states (kChunk x kMaxN floats) stay at 4 KiB per channel.
template <int kMaxN>
struct Plan {
  static constexpr int kChunk = 1024 / kMaxN;
};

struct Shape {
  int64_t batch, T, D, N;
  CRSM_HD int64_t chunks() const { return T == 0 ? 0 : (T + chunk - 1) / chunk; }
  int64_t chunk;
};

template <typename In>
struct Inputs {
  const In *x, *dt, *B, *C, *z;  // [batch, T, D] and, for B and C, [batch, T, N]
  const float *A, *Dskip;        // [D, N], [D]: parameters stay float32
};

struct ForwardOutputs {
  float* y;             // [batch, T, D]
  float* chunk_states;  // [batch, chunks, D, N]: the state entering each chunk
  float* last;          // [batch, D, N] or null: h_T, for recurrent decoding
};

struct BackwardOutputs {
  float *dx, *ddt, *dz;  // [batch, T, D], written
  float *dA, *dD;        // [D, N], [D], added to (start at zero)
  float *dB, *dC;        // [batch, T, N], added to (start at zero)
};

CRSM_HD inline float to_float(float v) { return v; }
#if defined(__CUDACC__)
CRSM_HD inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
#endif

CRSM_HD inline float exp_of(float v) {
#if defined(__CUDA_ARCH__)
  return expf(v);
#else
  return std::exp(v);
#endif
}

CRSM_HD inline float sigmoid(float v) { return 1.0f / (1.0f + exp_of(-v)); }

// One step of one channel: its inputs at (b, t), zero for a lane past the last channel.
template <typename In>
struct Step {
  float x = 0, dt = 0, z = 0;
  CRSM_HD Step(const Inputs<In>& in, const Shape& s, int64_t b, int64_t t, int64_t d) {
    if (d >= s.D) return;
    const int64_t i = (b * s.T + t) * s.D + d;
    x = to_float(in.x[i]);
    dt = to_float(in.dt[i]);
    z = to_float(in.z[i]);
  }
};

template <typename In>
CRSM_HD inline float b_of(const Inputs<In>& in, const Shape& s, int64_t b, int64_t t, int n) {
  return to_float(in.B[(b * s.T + t) * s.N + n]);
}
template <typename In>
CRSM_HD inline float c_of(const Inputs<In>& in, const Shape& s, int64_t b, int64_t t, int n) {
  return to_float(in.C[(b * s.T + t) * s.N + n]);
}

// h <- exp(dt * A) * h + dt * B_t * x, for every state n of the channel.
template <typename In, int kMaxN>
CRSM_HD inline void advance(const Inputs<In>& in, const Shape& s, int64_t b, int64_t t, const Step<In>& st,
                            const float* A, float* h) {
  for (int n = 0; n < s.N; ++n) h[n] = exp_of(st.dt * A[n]) * h[n] + st.dt * b_of(in, s, b, t, n) * st.x;
}

template <typename In, int kMaxN>
CRSM_HD void forward_channel(const Shape& s, const Inputs<In>& in, const ForwardOutputs& out, int64_t b, int64_t d) {
  float h[kMaxN], A[kMaxN];
  const bool real = d < s.D;
  for (int n = 0; n < s.N; ++n) {
    h[n] = 0;
    A[n] = real ? in.A[d * s.N + n] : 0.0f;
  }
  const float skip = real ? in.Dskip[d] : 0.0f;
  for (int64_t t = 0; t < s.T; ++t) {
    if (t % s.chunk == 0 && real)
      for (int n = 0; n < s.N; ++n) out.chunk_states[((b * s.chunks() + t / s.chunk) * s.D + d) * s.N + n] = h[n];
    const Step<In> st(in, s, b, t, d);
    advance<In, kMaxN>(in, s, b, t, st, A, h);
    float acc = 0;
    for (int n = 0; n < s.N; ++n) acc += c_of(in, s, b, t, n) * h[n];
    if (real) out.y[(b * s.T + t) * s.D + d] = (acc + skip * st.x) * st.z * sigmoid(st.z);
  }
  if (out.last && real)
    for (int n = 0; n < s.N; ++n) out.last[(b * s.D + d) * s.N + n] = h[n];
}

template <typename In, int kMaxN, typename Adder>
CRSM_HD void backward_channel(const Shape& s, const Inputs<In>& in, const float* grad, const float* chunk_states,
                              const BackwardOutputs& g, int64_t b, int64_t d, Adder add) {
  constexpr int kChunk = Plan<kMaxN>::kChunk;
  float A[kMaxN], dh[kMaxN], dA[kMaxN], states[kChunk + 1][kMaxN];  // states[0]: entering the chunk
  const bool real = d < s.D;
  for (int n = 0; n < s.N; ++n) {
    A[n] = real ? in.A[d * s.N + n] : 0.0f;
    dh[n] = 0;
    dA[n] = 0;
  }
  const float skip = real ? in.Dskip[d] : 0.0f;
  float dD = 0;
  for (int64_t c = s.chunks() - 1; c >= 0; --c) {
    const int64_t t0 = c * s.chunk, t1 = t0 + s.chunk < s.T ? t0 + s.chunk : s.T;
    for (int n = 0; n < s.N; ++n)
      states[0][n] = real ? chunk_states[((b * s.chunks() + c) * s.D + d) * s.N + n] : 0.0f;
    for (int64_t t = t0; t < t1; ++t) {
      for (int n = 0; n < s.N; ++n) states[t - t0 + 1][n] = states[t - t0][n];
      advance<In, kMaxN>(in, s, b, t, Step<In>(in, s, b, t, d), A, states[t - t0 + 1]);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const Step<In> st(in, s, b, t, d);
      const float* h = states[t - t0 + 1];
      const float* hp = states[t - t0];
      const int64_t i = (b * s.T + t) * s.D + d;
      const float go = real ? grad[i] : 0.0f;
      float acc = 0;
      for (int n = 0; n < s.N; ++n) acc += c_of(in, s, b, t, n) * h[n];
      const float y = acc + skip * st.x, sig = sigmoid(st.z);
      const float gy = go * st.z * sig;
      float dx = gy * skip, ddt = 0;
      dD += gy * st.x;
      for (int n = 0; n < s.N; ++n) {
        const float bn = b_of(in, s, b, t, n), cn = c_of(in, s, b, t, n);
        const float dhn = dh[n] + gy * cn;  // dL/dh_t
        const float decay = exp_of(st.dt * A[n]);
        const float g_arg = dhn * hp[n] * decay;  // dL/d(dt * A)
        ddt += g_arg * A[n] + dhn * bn * st.x;
        dA[n] += g_arg * st.dt;
        dx += dhn * st.dt * bn;
        add.shared(&g.dB[(b * s.T + t) * s.N + n], dhn * st.dt * st.x);
        add.shared(&g.dC[(b * s.T + t) * s.N + n], gy * h[n]);
        dh[n] = dhn * decay;  // dL/dh_{t-1} through the recurrence
      }
      if (real) {
        g.dx[i] = dx;
        g.ddt[i] = ddt;
        g.dz[i] = go * y * sig * (1.0f + st.z * (1.0f - sig));
      }
    }
  }
  if (!real) return;
  for (int n = 0; n < s.N; ++n) add.own(&g.dA[d * s.N + n], dA[n]);
  add.own(&g.dD[d], dD);
}

}  // namespace crsm::model::scan
