// The CPU step's fused paths against their plain references (issue 13, "a faster CPU
// step"): the causal convolution with SiLU, and the linear layer shared over threads.
// Outputs and every gradient; gradients also by finite differences in double.
#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "model/causal_conv.h"
#include "model/parallel_linear.h"
#include "test_helpers.h"

namespace fused_layers_test {

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-30);
}

// x as the mixer passes it: the first half of a wider tensor (strided rows).
std::vector<torch::Tensor> conv_inputs(torch::Dtype dtype) {
  torch::manual_seed(3);
  const auto o = torch::TensorOptions().dtype(dtype);
  const auto wide = torch::randn({3, 19, 2 * 37}, o);  // 37 channels: not a multiple of any vector width
  return {wide.narrow(-1, 0, 37), torch::randn({37, 1, 4}, o) * 0.5, torch::randn({37}, o)};
}

TEST(FusedConv, MatchesTheReferenceAndItsGradients) {
  const char* names[] = {"x", "weight", "bias"};
  const auto base = conv_inputs(torch::kFloat);
  std::vector<torch::Tensor> a, b;
  for (const auto& t : base) {
    a.push_back(t.detach().clone().requires_grad_(true));
    b.push_back(t.detach().clone().requires_grad_(true));
  }
  const auto fused = crsm::model::causal_conv_silu(a[0], a[1], a[2]);
  const auto ref = crsm::model::causal_conv_silu_reference(b[0], b[1], b[2]);
  EXPECT_LE(relative_error(fused, ref), 1e-6);
  const auto w = torch::randn_like(ref);
  (fused * w).sum().backward();
  (ref * w).sum().backward();
  for (int i = 0; i < 3; ++i) EXPECT_LE(relative_error(a[i].grad(), b[i].grad()), 1e-5) << names[i];
}

// Central finite differences in double against the fused backward.
TEST(FusedConv, GradientsByFiniteDifferencesInDouble) {
  const char* names[] = {"x", "weight", "bias"};
  auto in = conv_inputs(torch::kDouble);
  in = {in[0].narrow(1, 0, 6).narrow(-1, 0, 5).contiguous(), in[1].narrow(0, 0, 5).contiguous(),
        in[2].narrow(0, 0, 5).contiguous()};
  const auto weights = torch::randn({3, 6, 5}, torch::kDouble);
  auto loss = [&](const std::vector<torch::Tensor>& v) {
    torch::NoGradGuard no_grad;
    return (crsm::model::causal_conv_silu(v[0], v[1], v[2]) * weights).sum().item<double>();
  };
  std::vector<torch::Tensor> leaves;
  for (const auto& t : in) leaves.push_back(t.clone().requires_grad_(true));
  (crsm::model::causal_conv_silu(leaves[0], leaves[1], leaves[2]) * weights).sum().backward();
  crsm::testing::expect_finite_difference_gradients(in, loss, {leaves[0].grad(), leaves[1].grad(), leaves[2].grad()},
                                                    {names, names + 3});
}

TEST(ParallelLinear, MatchesLinearAndItsGradients) {
  at::set_num_threads(2);
  for (const bool with_bias : {true, false}) {
    torch::manual_seed(4);
    const auto x = torch::randn({5, 37, 33}), w = torch::randn({70, 33}), bias = torch::randn({70});
    std::vector<torch::Tensor> a = {x.clone().requires_grad_(true), w.clone().requires_grad_(true), bias.clone().requires_grad_(true)};
    std::vector<torch::Tensor> b = {x.clone().requires_grad_(true), w.clone().requires_grad_(true), bias.clone().requires_grad_(true)};
    const auto shared = crsm::model::parallel_linear(a[0], a[1], with_bias ? a[2] : torch::Tensor());
    const auto plain = at::linear(b[0], b[1], with_bias ? b[2] : torch::Tensor());
    ASSERT_EQ(shared.sizes(), plain.sizes());
    EXPECT_LE(relative_error(shared, plain), 1e-6);
    const auto g = torch::randn_like(plain);
    shared.backward(g);
    plain.backward(g);
    EXPECT_LE(relative_error(a[0].grad(), b[0].grad()), 1e-6) << "x";
    EXPECT_LE(relative_error(a[1].grad(), b[1].grad()), 1e-6) << "weight";
    if (with_bias) EXPECT_LE(relative_error(a[2].grad(), b[2].grad()), 1e-6) << "bias";
    else EXPECT_FALSE(a[2].grad().defined());
  }
}

// A view of a weight (the mixer's in_proj halves): the gradient reaches the whole weight.
// 640 rows x 32 x 16 is past the size at which the product is split over the threads
// (2^18 multiply-adds), so the split path is what runs.
TEST(ParallelLinear, AWeightViewGetsItsGradient) {
  at::set_num_threads(2);
  torch::manual_seed(5);
  const auto x = torch::randn({4, 160, 16});
  auto w = torch::randn({64, 16}).requires_grad_(true);
  crsm::model::parallel_linear(x, w.narrow(0, 32, 32), {}).sum().backward();
  const auto expected = torch::cat({torch::zeros({32, 16}), x.reshape({-1, 16}).sum(0).expand({32, 16})});
  EXPECT_LE(relative_error(w.grad(), expected), 1e-6);
}

}  // namespace fused_layers_test
