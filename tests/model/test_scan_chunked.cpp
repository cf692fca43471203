// The CUDA scan's arithmetic (selective_scan_chunked.h) built for the host, checked against
// selective_scan_reference in double: outputs, the final state and every gradient, at odd
// sizes, with T not a multiple of the chunk, for both state-size plans. On a GPU the same
// comparison runs on the device (CudaScan below, skipped without one).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/selective_scan.h"
#include "model/selective_scan_chunked.h"

// Named: the suite compiles as one unity file with the other scan tests.
namespace scan_chunked_test {

namespace scan = crsm::model::scan;

struct HostAdder {
  void shared(float* p, float v) const { *p += v; }
  void own(float* p, float v) const { *p += v; }
};

std::vector<torch::Tensor> scan_inputs(int64_t batch, int64_t T, int64_t D, int64_t N, uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({batch, T, D}), torch::softplus(torch::randn({batch, T, D})) * 0.5,
          -torch::exp(torch::randn({D, N}) * 0.5), torch::randn({batch, T, N}),
          torch::randn({batch, T, N}), torch::randn({D}), torch::randn({batch, T, D})};
}

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const auto bd = b.to(torch::kDouble);
  return (a.to(torch::kDouble) - bd).abs().max().item<double>() / std::max(bd.abs().max().item<double>(), 1e-30);
}

// The chunked scan on the host for inputs `in` (float, contiguous) and output weights `w`:
// y, h_T, the gradients {dx, ddt, dA, dB, dC, dD, dz} of sum(y * w), and the chunk states.
template <int kMaxN>
std::vector<torch::Tensor> chunked(const std::vector<torch::Tensor>& in, const torch::Tensor& w) {
  const int64_t batch = in[0].size(0), T = in[0].size(1), D = in[0].size(2), N = in[2].size(1);
  const scan::Shape s{batch, T, D, N, scan::Plan<kMaxN>::kChunk};
  const scan::Inputs<float> inputs{in[0].data_ptr<float>(), in[1].data_ptr<float>(), in[3].data_ptr<float>(),
                                   in[4].data_ptr<float>(), in[6].data_ptr<float>(), in[2].data_ptr<float>(),
                                   in[5].data_ptr<float>()};
  auto y = torch::empty({batch, T, D}), last = torch::empty({batch, D, N});
  auto states = torch::full({batch, s.chunks(), D, N}, NAN);
  const scan::ForwardOutputs out{y.data_ptr<float>(), states.data_ptr<float>(), last.data_ptr<float>()};
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < D; ++d) scan::forward_channel<float, kMaxN>(s, inputs, out, b, d);
  auto dx = torch::empty_like(in[0]), ddt = torch::empty_like(in[0]), dz = torch::empty_like(in[0]);
  auto dA = torch::zeros_like(in[2]), dD = torch::zeros_like(in[5]);
  auto dB = torch::zeros_like(in[3]), dC = torch::zeros_like(in[4]);
  const scan::BackwardOutputs g{dx.data_ptr<float>(), ddt.data_ptr<float>(), dz.data_ptr<float>(),
                                dA.data_ptr<float>(), dD.data_ptr<float>(), dB.data_ptr<float>(), dC.data_ptr<float>()};
  const auto grad = w.contiguous();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < D; ++d)
      scan::backward_channel<float, kMaxN>(s, inputs, grad.data_ptr<float>(), states.data_ptr<float>(), g, b, d,
                                           HostAdder{});
  return {y, last, dx, ddt, dA, dB, dC, dD, dz, states};
}

// The reference in double, with autograd: the same nine tensors.
std::vector<torch::Tensor> reference(const std::vector<torch::Tensor>& in, const torch::Tensor& w) {
  std::vector<torch::Tensor> v;
  for (const auto& t : in) v.push_back(t.to(torch::kDouble).requires_grad_(true));
  torch::Tensor last;
  const auto y = crsm::model::selective_scan_reference(v[0], v[1], v[2], v[3], v[4], v[5], v[6], &last);
  (y * w.to(torch::kDouble)).sum().backward();
  return {y.detach(), last, v[0].grad(), v[1].grad(), v[2].grad(), v[3].grad(), v[4].grad(), v[5].grad(), v[6].grad()};
}

template <int kMaxN>
void expect_matches_reference(int64_t batch, int64_t T, int64_t D, int64_t N, uint64_t seed) {
  const char* names[] = {"y", "h_T", "dx", "ddt", "dA", "dB", "dC", "dD", "dz"};
  const auto in = scan_inputs(batch, T, D, N, seed);
  const auto w = torch::randn({batch, T, D});
  const auto got = chunked<kMaxN>(in, w);
  const auto want = reference(in, w);
  for (int i = 0; i < 9; ++i) EXPECT_LE(relative_error(got[i], want[i]), 1e-5) << names[i];
}

TEST(ScanChunked, MatchesTheReferenceWithUpTo16States) {
  static_assert(scan::Plan<16>::kChunk == 64);
  expect_matches_reference<16>(3, 150, 13, 5, 1);  // chunks of 64, 64 and 22
  expect_matches_reference<16>(1, 64, 7, 16, 2);   // exactly one chunk
  expect_matches_reference<16>(2, 1, 3, 1, 3);     // one step
}

TEST(ScanChunked, MatchesTheReferenceWithUpTo64States) {
  static_assert(scan::Plan<64>::kChunk == 16);
  expect_matches_reference<64>(2, 37, 11, 20, 4);  // chunks of 16, 16 and 5
  expect_matches_reference<64>(1, 33, 5, 64, 5);
}

// What forward keeps for backward: the state entering each chunk (h after t0 steps),
// nothing per step.
TEST(ScanChunked, KeepsOnlyTheStateEnteringEachChunk) {
  const auto in = scan_inputs(2, 130, 6, 4, 6);
  const auto states = chunked<16>(in, torch::ones({2, 130, 6}))[9];
  ASSERT_EQ(states.sizes(), (std::vector<int64_t>{2, 3, 6, 4}));
  EXPECT_EQ(states.select(1, 0).abs().max().item<float>(), 0.0f);
  for (const int64_t chunk : {1, 2}) {
    const int64_t t0 = chunk * scan::Plan<16>::kChunk;
    std::vector<torch::Tensor> prefix;
    for (int i : {0, 1, 3, 4, 6}) prefix.push_back(in[i].narrow(1, 0, t0));
    torch::Tensor h;
    crsm::model::selective_scan_reference(prefix[0], prefix[1], in[2], prefix[2], prefix[3], in[5], prefix[4], &h);
    EXPECT_LE(relative_error(states.select(1, chunk), h), 1e-5) << "chunk " << chunk;
  }
}

// The kernels themselves, on a GPU (scripts/gpu_check.sh runs this where one is).
TEST(CudaScan, MatchesTheReferenceOnTheDevice) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  // Otherwise the reference would run on the device and this test would prove nothing.
  ASSERT_TRUE(crsm::model::cuda_scan_built()) << "a GPU is here but the CUDA scan was not built (no nvcc, or a "
                                                 "LibTorch without CUDA)";
  const char* names[] = {"x", "dt", "A", "B", "C", "D", "z"};
  for (const int64_t N : {16, 20}) {
    auto in = scan_inputs(3, 150, 37, N, 7);
    const auto w = torch::randn({3, 150, 37});
    std::vector<torch::Tensor> dev;
    for (const auto& t : in) dev.push_back(t.to(torch::kCUDA).requires_grad_(true));
    torch::Tensor last;
    const auto y = crsm::model::selective_scan(dev[0], dev[1], dev[2], dev[3], dev[4], dev[5], dev[6], &last);
    (y * w.to(torch::kCUDA)).sum().backward();
    const auto want = reference(in, w);
    EXPECT_LE(relative_error(y.cpu(), want[0]), 1e-5) << "y, N " << N;
    EXPECT_LE(relative_error(last.cpu(), want[1]), 1e-5) << "h_T, N " << N;
    for (int i = 0; i < 7; ++i) EXPECT_LE(relative_error(dev[i].grad().cpu(), want[i + 2]), 1e-5) << names[i] << ", N " << N;
  }
}

}  // namespace scan_chunked_test
