#include <cmath>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "model/backbone.h"
#include "model/parameter_count.h"
#include "test_helpers.h"

namespace {

using crsm::model::Backbone;
using crsm::model::ModelState;
using crsm::testing::max_abs_diff;
using crsm::testing::tiny_model_config;

class BackboneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    model = Backbone(tiny_model_config());
    model->eval();
    tokens = torch::randint(0, tiny_model_config().vocab_size, {3, 64}, torch::kLong);
  }
  Backbone model{nullptr};
  torch::Tensor tokens;
};

TEST_F(BackboneTest, RecurrentStepsMatchParallelLogits) {
  torch::NoGradGuard no_grad;
  const auto parallel = model->forward(tokens);
  ModelState state = model->empty_state(3);
  for (int64_t t = 0; t < tokens.size(1); ++t) {
    const auto out = model->step(tokens.select(1, t), state);
    ASSERT_LE(max_abs_diff(out.logits, parallel.logits.select(1, t)), 1e-4) << "position " << t;
    ASSERT_LE(max_abs_diff(out.values, parallel.values.select(1, t)), 1e-4) << "position " << t;
  }
  EXPECT_EQ(state.position, 64);
}

TEST_F(BackboneTest, PrefillThenStepsMatchParallelLogits) {
  torch::NoGradGuard no_grad;
  const auto parallel = model->forward(tokens);
  for (int64_t prompt : {1, 2, 23}) {
    ModelState state;
    const auto first = model->prefill(tokens.narrow(1, 0, prompt), state);
    EXPECT_LE(max_abs_diff(first.logits, parallel.logits.select(1, prompt - 1)), 1e-4);
    for (int64_t t = prompt; t < tokens.size(1); ++t) {
      const auto out = model->step(tokens.select(1, t), state);
      ASSERT_LE(max_abs_diff(out.logits, parallel.logits.select(1, t)), 1e-4)
          << "prompt " << prompt << ", position " << t;
    }
  }
}

TEST_F(BackboneTest, ChangingATokenLeavesEarlierLogitsUnchanged) {
  torch::NoGradGuard no_grad;
  const int64_t t = 40;
  auto changed = tokens.clone();
  changed.select(1, t).add_(1).remainder_(tiny_model_config().vocab_size);
  const auto a = model->forward(tokens).logits;
  const auto b = model->forward(changed).logits;
  EXPECT_LE(max_abs_diff(a.narrow(1, 0, t), b.narrow(1, 0, t)), 1e-6);
  EXPECT_GT(max_abs_diff(a.select(1, t), b.select(1, t)), 1e-4) << "token t must matter at t";
}

TEST_F(BackboneTest, PredictFromStatesEqualsTheStepThatMadeThem) {
  torch::NoGradGuard no_grad;
  ModelState state = model->empty_state(3);
  crsm::model::StepOutput out;
  for (int64_t t = 0; t < 10; ++t) out = model->step(tokens.select(1, t), state);
  const auto again = model->predict_from_states(state.latents);
  EXPECT_LE(max_abs_diff(again.logits, out.logits), 1e-6);
  EXPECT_LE(max_abs_diff(again.values, out.values), 1e-6);
}

TEST_F(BackboneTest, StepCopiesAreIndependentSnapshots) {
  torch::NoGradGuard no_grad;
  ModelState state = model->empty_state(3);
  model->step(tokens.select(1, 0), state);
  const ModelState snapshot = state;
  const auto a = model->step(tokens.select(1, 1), state).logits;
  ModelState replay = snapshot;
  const auto b = model->step(tokens.select(1, 1), replay).logits;
  EXPECT_EQ(max_abs_diff(a, b), 0.0);
}

TEST_F(BackboneTest, ConsensusValueIsMeanMinusTenthOfSpread) {
  const double disagree[] = {1.0, 3.0}, agree[] = {2.0, 2.0}, three[] = {0.0, 0.0, 3.0};
  EXPECT_NEAR(crsm::model::consensus_value(disagree, 2), 2.0 - 0.1 * 1.0, 1e-12);
  EXPECT_NEAR(crsm::model::consensus_value(agree, 2), 2.0, 1e-12);
  EXPECT_NEAR(crsm::model::consensus_value(three, 3), 1.0 - 0.1 * std::sqrt(2.0), 1e-12);
}

TEST_F(BackboneTest, RejectsTokensOutsideTheVocabulary) {
  const auto bad = torch::full({1, 3}, tiny_model_config().vocab_size, torch::kLong);
  try {
    model->forward(bad);
    FAIL() << "expected an error";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("token id 50"), std::string::npos) << e.what();
  }
}

TEST(BackboneNames, ParameterNamesAndShapesFollowTheReferenceModule) {
  auto cfg = tiny_model_config();
  Backbone model(cfg);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : model->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  const int64_t di = cfg.d_inner(), r = cfg.resolved_dt_rank(), n = cfg.d_state, d = cfg.d_model;
  const std::map<std::string, std::vector<int64_t>> expected_layer = {
      {"mixer.in_proj.weight", {2 * di, d}},
      {"mixer.conv1d.weight", {di, 1, cfg.d_conv}},
      {"mixer.conv1d.bias", {di}},
      {"mixer.x_proj.weight", {r + 2 * n, di}},
      {"mixer.dt_proj.weight", {di, r}},
      {"mixer.dt_proj.bias", {di}},
      {"mixer.A_log", {di, n}},
      {"mixer.D", {di}},
      {"mixer.out_proj.weight", {d, di}},
      {"norm.weight", {d}},
      {"ffn_norm.weight", {d}},
      {"ffn.0.weight", {cfg.d_ffn, d}},
      {"ffn.0.bias", {cfg.d_ffn}},
      {"ffn.3.weight", {d, cfg.d_ffn}},
      {"ffn.3.bias", {d}},
  };
  std::map<std::string, std::vector<int64_t>> expected = {
      {"embedding.weight", {cfg.vocab_size, d}},
      {"norm_f.weight", {d}},
      {"lm_head.weight", {cfg.vocab_size, d}},
  };
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".";
    for (const auto& [name, shape] : expected_layer) expected[prefix + name] = shape;
    expected["value_heads." + std::to_string(l) + ".weight"] = {1, d};
    expected["value_heads." + std::to_string(l) + ".bias"] = {1};
  }
  EXPECT_EQ(shapes, expected);
}

// d_ffn = 0: the Mamba-1 block of the reference implementation, x + Mixer(Norm(x)) alone.
TEST(BackboneWithoutFfn, HasNoFeedForwardParametersAndTheCountedShapes) {
  auto cfg = tiny_model_config();
  cfg.d_ffn = 0;
  Backbone model(cfg);
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  int64_t total = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.key().find("ffn"), std::string::npos) << p.key();
    shapes.emplace_back(p.key(), p.value().sizes().vec());
    total += p.value().numel();
  }
  EXPECT_EQ(shapes, crsm::model::parameter_shapes(cfg));
  EXPECT_EQ(total, crsm::model::analytic_parameter_count(cfg));
  // Each block lost ffn_norm (d) and ffn's two linears (d f + f and f d + d).
  auto with_ffn = cfg;
  with_ffn.d_ffn = 40;
  const int64_t d = cfg.d_model, f = with_ffn.d_ffn;
  EXPECT_EQ(crsm::model::analytic_parameter_count(with_ffn) - total, cfg.num_layers * (d + d * f + f + f * d + d));
}

TEST(BackboneWithoutFfn, RecurrentStepsMatchParallelLogits) {
  auto cfg = tiny_model_config();
  cfg.d_ffn = 0;
  torch::manual_seed(11);
  Backbone model(cfg);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(0, cfg.vocab_size, {3, 48}, torch::kLong);
  const auto parallel = model->forward(tokens);
  ModelState state = model->empty_state(3);
  double worst = 0;
  for (int64_t t = 0; t < tokens.size(1); ++t) {
    const auto out = model->step(tokens.select(1, t), state);
    worst = std::max(worst, max_abs_diff(out.logits, parallel.logits.select(1, t)));
    ASSERT_LE(max_abs_diff(out.values, parallel.values.select(1, t)), 1e-4) << "position " << t;
  }
  EXPECT_LE(worst, 1e-4);
  std::cout << "d_ffn 0: max |recurrent - parallel| logit = " << worst << "\n";
}

TEST(BackboneInit, FollowsTheMambaInitialisation) {
  auto cfg = tiny_model_config();
  Backbone model(cfg);
  std::map<std::string, torch::Tensor> p;
  for (const auto& item : model->named_parameters()) p[item.key()] = item.value();
  const auto A_log = p.at("layers.0.mixer.A_log");
  EXPECT_TRUE(torch::allclose(A_log.select(0, 3),
                              torch::log(torch::arange(1, cfg.d_state + 1, torch::kFloat))));
  EXPECT_TRUE(torch::equal(p.at("layers.1.mixer.D"), torch::ones({cfg.d_inner()})));
  const auto dt = torch::softplus(p.at("layers.0.mixer.dt_proj.bias"));
  EXPECT_GE(dt.min().item<float>(), 1e-4f * 0.999f);
  EXPECT_LE(dt.max().item<float>(), 0.1f * 1.001f);
}

TEST(BackboneTied, TiedEmbeddingsShareTheEmbeddingMatrix) {
  auto cfg = tiny_model_config();
  cfg.tie_embeddings = true;
  Backbone model(cfg);
  model->eval();
  for (const auto& item : model->named_parameters()) EXPECT_NE(item.key(), "lm_head.weight");
  torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(0, cfg.vocab_size, {1, 5}, torch::kLong);
  const auto out = model->forward(tokens);
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{1, 5, cfg.vocab_size}));
}

// The units a model announces, in order, as "f+u" (enter forward), "f-u" (leave) and
// "b+u" (enter backward).
class RecordingHooks final : public crsm::model::UnitHooks {
 public:
  std::vector<std::string> events;
  void enter_forward(const std::vector<int>& units) override { note("f+", units); }
  void leave_forward(const std::vector<int>& units) override { note("f-", units); }
  void enter_backward(const std::vector<int>& units) override { note("b+", units); }

 private:
  void note(const std::string& what, const std::vector<int>& units) {
    std::string s = what;
    for (size_t i = 0; i < units.size(); ++i) s += (i ? "," : "") + std::to_string(units[i]);
    events.push_back(s);
  }
};

// ZeRO-3 gathers by these announcements: every unit is entered before its parameters
// are read, forward in order and backward in reverse, before any of its gradients.
TEST(BackboneUnits, ForwardAndBackwardAnnounceEachUnitInOrder) {
  for (const bool tied : {false, true}) {
    auto cfg = tiny_model_config();
    cfg.tie_embeddings = tied;
    Backbone model(cfg);
    RecordingHooks hooks;
    model->set_unit_hooks(&hooks);
    const auto tokens = torch::randint(0, cfg.vocab_size, {2, 6}, torch::kLong);
    const auto out = model->forward(tokens);
    const std::string head = tied ? "3,0" : "3";
    const std::vector<std::string> forward = {"f+0", "f-0", "f+1", "f-1", "f+2", "f-2", "f+" + head, "f-" + head, "f+4", "f-4"};
    EXPECT_EQ(hooks.events, forward);
    hooks.events.clear();
    (out.logits.pow(2).mean() + out.values.pow(2).mean()).backward();
    const std::vector<std::string> backward = {"b+4", "b+" + head, "b+2", "b+1", "b+0"};
    EXPECT_EQ(hooks.events, backward) << "tied " << tied;
    model->set_unit_hooks(nullptr);
    EXPECT_EQ(crsm::model::parameter_unit(cfg, "layers.1.mixer.D"), 2);
    EXPECT_EQ(crsm::model::parameter_unit(cfg, "norm_f.weight"), 3);
    EXPECT_THROW(crsm::model::parameter_unit(cfg, "nothing.weight"), std::invalid_argument);
  }
}

}  // namespace
