#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../model/test_helpers.h"
#include "model/backbone.h"
#include "train/lm_loss.h"
#include "train/mixed_precision.h"

namespace {

using crsm::train::AutocastScope;
using crsm::train::Precision;

TEST(MixedPrecision, Bf16ForwardStaysCloseToFloat32AndKeepsFloat32Gradients) {
  torch::manual_seed(21);
  crsm::model::Backbone model(crsm::testing::tiny_model_config());
  const auto windows = torch::randint(0, 40, {3, 17}, torch::kLong);
  const auto reference = crsm::train::lm_loss(model, windows, 1.0);
  crsm::train::LossParts mixed;
  {
    AutocastScope autocast(Precision::kBFloat16, c10::DeviceType::CPU);
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
    // The LM head's product really runs in bfloat16; the loss is taken in float32.
    EXPECT_EQ(model->forward(windows.narrow(1, 0, 16)).logits.scalar_type(), torch::kBFloat16);
    mixed = crsm::train::lm_loss(model, windows, 1.0);
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(mixed.total.scalar_type(), torch::kFloat);
  // bfloat16 keeps 8 bits of mantissa: the loss agrees to about 1%.
  EXPECT_NEAR(mixed.lm.item<double>(), reference.lm.item<double>(), 0.01 * reference.lm.item<double>());
  EXPECT_NE(mixed.lm.item<double>(), reference.lm.item<double>());
  EXPECT_GT(mixed.value.item<double>(), 0.0);
  mixed.total.backward();
  for (const auto& p : model->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
  }
}

TEST(MixedPrecision, Float32ScopeChangesNothing) {
  {
    AutocastScope autocast(Precision::kFloat32, c10::DeviceType::CPU);
    EXPECT_FALSE(at::autocast::is_cpu_enabled());
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
}

TEST(MixedPrecision, ParsesOnlyKnownNames) {
  EXPECT_EQ(crsm::train::parse_precision("bf16"), Precision::kBFloat16);
  EXPECT_EQ(crsm::train::parse_precision("fp32"), Precision::kFloat32);
  EXPECT_THROW(crsm::train::parse_precision("fp16"), crsm::UsageError);
}

}  // namespace
