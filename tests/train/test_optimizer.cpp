#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/cpu_kernels.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace {

using crsm::train::AdamW;

// Slots over whole parameters, updated from the parameters' own gradients.
std::vector<AdamW::Slot> whole(std::vector<std::pair<std::string, torch::Tensor>> params, bool decay) {
  std::vector<AdamW::Slot> slots;
  for (auto& [name, p] : params) slots.push_back({name, 0, p, decay});
  return slots;
}

std::vector<torch::Tensor> grads_of(const AdamW& opt) {
  std::vector<torch::Tensor> g;
  for (const auto& s : opt.slots()) g.push_back(s.value.grad());
  return g;
}

TEST(TrainAdamW, MatchesLibTorchAdamW) {
  torch::manual_seed(3);
  const auto init_a = torch::randn({4, 5}), init_b = torch::randn({5});
  auto a1 = init_a.clone().requires_grad_(true), b1 = init_b.clone().requires_grad_(true);
  auto a2 = init_a.clone().requires_grad_(true), b2 = init_b.clone().requires_grad_(true);
  AdamW ours(whole({{"a", a1}, {"b", b1}}, true), {0.9, 0.95, 1e-8, 0.1});
  torch::optim::AdamW reference({a2, b2},
                                torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    const auto x = torch::randn({3, 4});
    a1.mutable_grad() = torch::Tensor();
    b1.mutable_grad() = torch::Tensor();
    reference.zero_grad();
    (x.matmul(a1) + b1).pow(2).sum().backward();
    (x.matmul(a2) + b2).pow(2).sum().backward();
    ours.step(0.01, grads_of(ours));
    reference.step();
  }
  EXPECT_LE((a1 - a2).abs().max().item<double>(), 1e-6);
  EXPECT_LE((b1 - b2).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(ours.steps_taken(), 5);
}

// Pieces of one parameter updated by separate optimizers (as ranks do under ZeRO) give
// exactly the update of one optimizer over the whole parameter. The cut at 3 puts
// elements the whole updates in its vector loop into the short piece's scalar tail.
TEST(TrainAdamW, PiecesUpdateExactlyLikeTheWhole) {
  torch::manual_seed(5);
  auto whole_p = torch::randn({37});
  auto split_p = whole_p.clone();
  AdamW one({{"p", 0, whole_p, true}}, {});
  AdamW lo({{"p", 0, split_p.narrow(0, 0, 3), true}}, {});
  AdamW hi({{"p", 3, split_p.narrow(0, 3, 34), true}}, {});
  for (int step = 0; step < 4; ++step) {
    const auto g = torch::randn({37});
    one.step(0.01, {g});
    lo.step(0.01, {g.narrow(0, 0, 3)});
    hi.step(0.01, {g.narrow(0, 3, 34)});
  }
  EXPECT_TRUE(torch::equal(whole_p, split_p));
}

// The one-pass update on float CPU tensors against the plain form of tensor operations,
// with and without decay, over more elements than one thread's share.
TEST(TrainAdamW, FusedUpdateMatchesThePlainForm) {
  torch::manual_seed(6);
  for (const bool decay : {true, false}) {
    auto fused_p = torch::randn({100003}), plain_p = fused_p.clone();
    AdamW fused({{"p", 0, fused_p, decay}}, {}), plain({{"p", 0, plain_p, decay}}, {});
    for (int step = 0; step < 5; ++step) {
      const auto g = torch::randn({100003});
      crsm::model::set_fused_cpu_kernels(true);
      fused.step(0.01, {g});
      crsm::model::set_fused_cpu_kernels(false);
      plain.step(0.01, {g});
    }
    crsm::model::set_fused_cpu_kernels(true);
    EXPECT_LE((fused_p - plain_p).abs().max().item<double>(), 1e-6 * plain_p.abs().max().item<double>()) << decay;
    // The two round differently (addcmul scales g before squaring it): equal results
    // would mean the same path ran twice.
    EXPECT_FALSE(torch::equal(fused_p, plain_p)) << "the fused update did not run";
  }
}

// State saved as two pieces loads into a differently cut slot (re-partitioning).
TEST(TrainAdamW, StateRepartitionsAcrossDifferentPieces) {
  torch::manual_seed(4);
  auto p = torch::randn({8});
  AdamW lo({{"p", 0, p.narrow(0, 0, 3), false}}, {}), hi({{"p", 3, p.narrow(0, 3, 5), false}}, {});
  lo.step(0.05, {torch::randn({3})});
  hi.step(0.05, {torch::randn({5})});
  auto saved = lo.state();
  for (auto& e : hi.state())
    if (e.first != "step") saved.push_back(e);
  int64_t step = 0;
  const auto pieces = AdamW::parse_state(saved, "test", &step);
  EXPECT_EQ(step, 1);

  auto q = p.clone();
  AdamW middle({{"p", 2, q.narrow(0, 2, 4), false}}, {});
  middle.load_state(pieces, step, "test");
  const auto& state = middle.state();
  const auto expected_avg = torch::cat({lo.state()[0].second.narrow(0, 2, 1), hi.state()[0].second.narrow(0, 0, 3)});
  EXPECT_TRUE(torch::equal(state[0].second, expected_avg));
  EXPECT_EQ(middle.steps_taken(), 1);
}

TEST(TrainAdamW, LoadStateRejectsUncoveredElements) {
  auto p = torch::zeros({4});
  AdamW piece({{"p", 0, p.narrow(0, 0, 2), false}}, {});
  int64_t step = 0;
  const auto pieces = AdamW::parse_state(piece.state(), "test", &step);
  AdamW whole_opt({{"p", 0, p, false}}, {});
  EXPECT_THROW(whole_opt.load_state(pieces, step, "test"), crsm::model::TensorFileError);
}

TEST(TrainAdamW, DecayAppliesToMatricesButNotToStateDecayRates) {
  EXPECT_TRUE(crsm::train::decays("layers.0.mixer.in_proj.weight", 2));
  EXPECT_FALSE(crsm::train::decays("layers.0.mixer.A_log", 2));
  EXPECT_FALSE(crsm::train::decays("layers.0.mixer.D", 1));
  EXPECT_FALSE(crsm::train::decays("norm_f.weight", 1));
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
