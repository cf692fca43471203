#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/selective_scan.h"
#include "test_helpers.h"

namespace {

using crsm::model::selective_scan;
using crsm::model::selective_scan_fused_backward;
using crsm::model::selective_scan_fused_forward;
using crsm::model::selective_scan_reference;

struct ScanInputs {
  std::vector<torch::Tensor> all;  // x, dt, A, B, C, D, z
};

ScanInputs random_inputs(int64_t batch, int64_t T, int64_t D, int64_t N, torch::Dtype dtype,
                         uint64_t seed) {
  torch::manual_seed(seed);
  const auto o = torch::TensorOptions().dtype(dtype);
  return {{torch::randn({batch, T, D}, o), torch::softplus(torch::randn({batch, T, D}, o)) * 0.5,
           -torch::exp(torch::randn({D, N}, o) * 0.5), torch::randn({batch, T, N}, o),
           torch::randn({batch, T, N}, o), torch::randn({D}, o), torch::randn({batch, T, D}, o)}};
}

// max |a - b| relative to max |b|: robust to entries that are near zero.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = b.abs().max().item<double>();
  return (a - b).abs().max().item<double>() / std::max(scale, 1e-30);
}

TEST(SelectiveScan, FusedForwardMatchesReference) {
  // d_inner 37 is not a multiple of the kernel's channel block.
  auto in = random_inputs(3, 41, 37, 5, torch::kFloat, 1).all;
  torch::Tensor last_fused, last_ref;
  const auto fused =
      selective_scan_fused_forward(in[0], in[1], in[2], in[3], in[4], in[5], in[6], &last_fused);
  const auto ref =
      selective_scan_reference(in[0], in[1], in[2], in[3], in[4], in[5], in[6], &last_ref);
  EXPECT_LE(relative_error(fused, ref), 1e-5);
  EXPECT_LE(relative_error(last_fused, last_ref), 1e-5);
}

TEST(SelectiveScan, FusedGradientsMatchReference) {
  const char* names[] = {"x", "dt", "A", "B", "C", "D", "z"};
  // d_inner 40: two whole channel blocks and a partial one.
  auto base = random_inputs(2, 64, 40, 16, torch::kFloat, 2).all;
  std::vector<torch::Tensor> a, b;
  for (const auto& t : base) {
    a.push_back(t.clone().requires_grad_(true));
    b.push_back(t.clone().requires_grad_(true));
  }
  const auto weights = torch::randn({2, 64, 40});
  (selective_scan(a[0], a[1], a[2], a[3], a[4], a[5], a[6]) * weights).sum().backward();
  (selective_scan_reference(b[0], b[1], b[2], b[3], b[4], b[5], b[6]) * weights).sum().backward();
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(a[i].grad().defined()) << names[i];
    EXPECT_LE(relative_error(a[i].grad(), b[i].grad()), 1e-5) << "gradient of " << names[i];
  }
}

// Central finite differences in double precision against the fused backward.
TEST(SelectiveScan, FusedBackwardPassesDoubleGradCheck) {
  const char* names[] = {"x", "dt", "A", "B", "C", "D", "z"};
  auto in = random_inputs(2, 5, 3, 2, torch::kDouble, 3).all;
  const auto weights = torch::randn({2, 5, 3}, torch::kDouble);
  auto loss = [&](const std::vector<torch::Tensor>& v) {
    return (selective_scan_fused_forward(v[0], v[1], v[2], v[3], v[4], v[5], v[6]) * weights)
        .sum()
        .item<double>();
  };
  const auto grads =
      selective_scan_fused_backward(weights, in[0], in[1], in[2], in[3], in[4], in[5], in[6]);
  crsm::testing::expect_finite_difference_gradients(in, loss, grads, {names, names + 7});
}

TEST(SelectiveScan, RejectsMismatchedShapes) {
  auto in = random_inputs(1, 4, 8, 4, torch::kFloat, 4).all;
  const auto bad_B = torch::randn({1, 4, 3});
  EXPECT_THROW(selective_scan_fused_forward(in[0], in[1], in[2], bad_B, in[4], in[5], in[6]),
               c10::Error);
}

}  // namespace
