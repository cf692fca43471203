#include <gtest/gtest.h>
#include <torch/torch.h>

#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace {

using crsm::train::AdamW;

TEST(TrainAdamW, MatchesLibTorchAdamW) {
  torch::manual_seed(3);
  const auto init_a = torch::randn({4, 5}), init_b = torch::randn({5});
  auto a1 = init_a.clone().requires_grad_(true), b1 = init_b.clone().requires_grad_(true);
  auto a2 = init_a.clone().requires_grad_(true), b2 = init_b.clone().requires_grad_(true);
  AdamW ours({{"a", a1, true}, {"b", b1, true}}, {0.9, 0.95, 1e-8, 0.1});
  torch::optim::AdamW reference({a2, b2},
                                torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    const auto x = torch::randn({3, 4});
    ours.zero_grad();
    reference.zero_grad();
    (x.matmul(a1) + b1).pow(2).sum().backward();
    (x.matmul(a2) + b2).pow(2).sum().backward();
    ours.step(0.01);
    reference.step();
  }
  EXPECT_LE((a1 - a2).abs().max().item<double>(), 1e-6);
  EXPECT_LE((b1 - b2).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(ours.steps_taken(), 5);
}

TEST(TrainAdamW, StateRoundTripContinuesIdentically) {
  torch::manual_seed(4);
  auto make = [](const torch::Tensor& init) { return init.clone().requires_grad_(true); };
  const auto init = torch::randn({6});
  auto p1 = make(init), p2 = make(init);
  AdamW first({{"p", p1, false}}, {}), second({{"p", p2, false}}, {});
  auto step = [](AdamW& opt, torch::Tensor& p, double scale) {
    opt.zero_grad();
    (p * scale).pow(2).sum().backward();
    opt.step(0.05);
  };
  step(first, p1, 1.0);
  step(first, p1, 2.0);
  {
    torch::NoGradGuard no_grad;
    p2.copy_(p1);
  }
  second.load_state(first.state(), "test");
  step(first, p1, 3.0);
  step(second, p2, 3.0);
  EXPECT_TRUE(torch::equal(p1, p2));
}

TEST(TrainAdamW, LoadStateRejectsMissingEntries) {
  auto p = torch::zeros({2}).requires_grad_(true);
  AdamW opt({{"p", p, false}}, {});
  auto state = opt.state();
  state.erase(state.begin());
  EXPECT_THROW(opt.load_state(state, "test"), crsm::model::TensorFileError);
}

TEST(TrainAdamW, DecayAppliesToMatricesButNotToStateDecayRates) {
  const auto groups = crsm::train::decay_groups({{"layers.0.mixer.in_proj.weight", torch::zeros({4, 2})},
                                                 {"layers.0.mixer.A_log", torch::zeros({4, 2})},
                                                 {"layers.0.mixer.D", torch::zeros({4})},
                                                 {"norm_f.weight", torch::zeros({2})}});
  EXPECT_TRUE(groups[0].decay);
  EXPECT_FALSE(groups[1].decay);
  EXPECT_FALSE(groups[2].decay);
  EXPECT_FALSE(groups[3].decay);
}

TEST(TrainLrSchedule, WarmsUpThenDecaysToTheFloor) {
  const crsm::train::LrSchedule s{1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_NEAR(s.at(10), 1.0, 1e-12);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // half-way down the cosine
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  EXPECT_NEAR(s.at(500), 0.1, 1e-12);
  EXPECT_GT(s.at(30), s.at(40));
}

}  // namespace
