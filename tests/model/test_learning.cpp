#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/backbone.h"
#include "test_helpers.h"

namespace {

// Arithmetic progressions mod V with a random start and stride: after two tokens the
// rest of a sequence is determined, so a model that learns drives the loss far below
// the uniform ln(V).
torch::Tensor progression_batch(int64_t batch, int64_t T, int64_t vocab) {
  const auto start = torch::randint(0, vocab, {batch, 1}, torch::kLong);
  const auto stride = torch::randint(1, 4, {batch, 1}, torch::kLong);
  return (start + stride * torch::arange(T, torch::kLong).unsqueeze(0)).remainder(vocab);
}

TEST(Learning, AdamWLearnsASyntheticSequenceTask) {
  torch::manual_seed(11);
  auto cfg = crsm::testing::tiny_model_config();
  cfg.vocab_size = 16;
  cfg.d_model = 32;
  crsm::model::Backbone model(cfg);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(3e-3));
  auto loss_of = [&](const torch::Tensor& seq) {
    const auto logits = model->forward(seq.narrow(1, 0, seq.size(1) - 1)).logits;
    return torch::nn::functional::cross_entropy(logits.reshape({-1, cfg.vocab_size}),
                                                seq.narrow(1, 1, seq.size(1) - 1).reshape(-1));
  };
  torch::manual_seed(12);
  const auto held_out = progression_batch(64, 24, cfg.vocab_size);
  const double initial = loss_of(held_out).item<double>();
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    auto loss = loss_of(progression_batch(16, 24, cfg.vocab_size));
    loss.backward();
    opt.step();
  }
  const double final_loss = loss_of(held_out).item<double>();
  EXPECT_NEAR(initial, std::log(16.0), 0.3);
  EXPECT_LT(final_loss, 0.35 * initial) << "initial " << initial << ", final " << final_loss;
}

}  // namespace
