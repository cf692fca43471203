// Beam search scored by log-probability and value (SPEC §9): on toys whose values are
// known, the beam finds the answer they rate best where the policy alone would not; a beam of width 1 is
// greedy decoding; per block, hypotheses are compared only where blocks end; the cost is
// at most width^2 transitions per answer token.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <vector>

#include "../model/test_helpers.h"
#include "model/backbone.h"
#include "model/generation.h"
#include "search/beam.h"

namespace crsm::search {
namespace {

using Sequence = std::vector<int64_t>;
constexpr int64_t kVocab = 4;

// A toy whose latent is the whole path (each token + 1 as a base-5 digit): its policy and
// value are functions of the path the test writes down.
class PathModel : public LatentModel {
 public:
  PathModel(std::function<std::vector<double>(const Sequence&)> policy, std::function<double(const Sequence&)> value)
      : policy_(std::move(policy)), value_(std::move(value)) {}

  Expansion evaluate(const States& states) override { return at(states.latents); }
  Expansion step(const States& states, const std::vector<int64_t>& actions) override {
    auto next = states.latents.clone();
    for (size_t i = 0; i < actions.size(); ++i) next[i][0][0] = next[i][0][0].item<double>() * 5 + double(actions[i] + 1);
    steps += static_cast<int64_t>(actions.size());
    return at(next);
  }
  bool needs_caches() const override { return false; }

  static Sequence path_of(double code) {
    Sequence s;
    for (auto c = static_cast<int64_t>(code); c > 0; c /= 5) s.insert(s.begin(), c % 5 - 1);
    return s;
  }

  int64_t steps = 0;

 private:
  Expansion at(const at::Tensor& latents) {
    const int64_t n = latents.size(0);
    auto logits = torch::zeros({n, kVocab}, torch::kDouble);
    auto values = torch::zeros({n, 1}, torch::kDouble);
    for (int64_t i = 0; i < n; ++i) {
      const auto path = path_of(latents[i][0][0].item<double>());
      logits[i] = torch::tensor(policy_(path), torch::kDouble);
      values[i][0] = value_(path);
    }
    return {{latents, {}}, logits, values};
  }

  std::function<std::vector<double>(const Sequence&)> policy_;
  std::function<double(const Sequence&)> value_;
};

States path_root() { return {torch::zeros({1, 1, 1}, torch::kDouble), {}}; }

// Token 3 ends the answer (taken), token 2 ends a block.
BeamRules path_rules() {
  BeamRules r;
  r.verdict = [](const Sequence&, int64_t token) {
    return token == 3 ? model::StepVerdict::kTakeAndStop : model::StepVerdict::kTake;
  };
  r.ends_block = [](const Sequence& tokens) { return !tokens.empty() && tokens.back() == 2; };
  return r;
}

BeamOptions beam_options(int64_t width, BeamUnit unit) {
  BeamOptions o;
  o.width = width;
  o.unit = unit;
  o.max_tokens = 6;
  return o;
}

TEST(Beam, FindsTheAnswerTheValueRatesBestWhereThePolicyWouldNot) {
  // The policy prefers 0 > 1 > 2 > 3 everywhere, a little; only 1 1 3 is worth much, and
  // its prefixes show the way.
  const std::map<Sequence, double> value = {{{1}, 0.5}, {{1, 1}, 0.6}, {{1, 1, 3}, 0.9}};
  PathModel toy([](const Sequence&) { return std::vector<double>{0.3, 0.2, 0.1, 0}; },
                [&](const Sequence& s) { return value.count(s) ? value.at(s) : 0.01; });
  const auto greedy = beam_search(toy, path_root(), beam_options(1, BeamUnit::kToken), path_rules());
  EXPECT_EQ(greedy.tokens, Sequence(6, 0));  // width 1 follows the policy to the limit
  const auto beam = beam_search(toy, path_root(), beam_options(4, BeamUnit::kToken), path_rules());
  EXPECT_EQ(beam.tokens, (Sequence{1, 1, 3}));
  EXPECT_DOUBLE_EQ(beam.value, 0.9);
  const auto p = torch::log_softmax(torch::tensor({0.3, 0.2, 0.1, 0.0}, torch::kDouble), 0);
  EXPECT_NEAR(beam.logprob, (2 * p[1] + p[3]).item<double>(), 1e-12);
}

TEST(Beam, PerBlockComparesHypothesesOnlyWhereBlocksEnd) {
  // A block is one token 0 or 1 then 2. Mid-block, 0 looks better; at the block's end,
  // 1 2 is. After a block the policy ends the answer.
  const std::map<Sequence, double> value = {{{0}, 0.8}, {{1}, 0.1}, {{0, 2}, 0.1}, {{1, 2}, 0.8},
                                            {{0, 2, 3}, 0.1}, {{1, 2, 3}, 0.8}};
  auto policy = [](const Sequence& s) {
    if (s.empty()) return std::vector<double>{3, 2, 0, 0};
    if (s.back() == 2) return std::vector<double>{0, 0, 0, 3};
    return std::vector<double>{0, 0, 3, 1};
  };
  PathModel toy(policy, [&](const Sequence& s) { return value.count(s) ? value.at(s) : 0.0; });
  // Per block, the block 1 2 wins at its end although its first token looked worse.
  const auto block = beam_search(toy, path_root(), beam_options(2, BeamUnit::kBlock), path_rules());
  EXPECT_EQ(block.tokens, (Sequence{1, 2, 3}));
  // Per token, the first token is ranked by the (misleading) mid-block value.
  auto first_only = beam_options(2, BeamUnit::kToken);
  first_only.max_tokens = 1;
  EXPECT_EQ(beam_search(toy, path_root(), first_only, path_rules()).tokens, (Sequence{0}));
}

TEST(Beam, AStopTokenFinishesAHypothesisWithoutAStep) {
  // Token 0 is a stop token: it ends the answer untaken, worth the state it stopped in
  // (its probability counted).
  PathModel toy([](const Sequence&) { return std::vector<double>{3, 2, 1, 0}; },
                [](const Sequence& s) { return s == Sequence{1} ? 0.9 : 0.1; });
  auto rules = path_rules();
  rules.verdict = [](const Sequence&, int64_t token) {
    return token == 0 ? model::StepVerdict::kStop : model::StepVerdict::kTake;
  };
  const auto r = beam_search(toy, path_root(), beam_options(2, BeamUnit::kToken), rules);
  EXPECT_EQ(r.tokens, (Sequence{1}));
  EXPECT_DOUBLE_EQ(r.value, 0.9);
  const auto p = torch::log_softmax(torch::tensor({3.0, 2.0, 1.0, 0.0}, torch::kDouble), 0);
  EXPECT_NEAR(r.logprob, (p[1] + p[0]).item<double>(), 1e-12);
}

TEST(Beam, NeverSpendsMoreThanItsBudget) {
  // Values that favour long hypotheses keep every beam live to the token limit; blocks end
  // only at 2, which this policy ranks third.
  PathModel toy([](const Sequence&) { return std::vector<double>{3, 2, 1, 0}; },
                [](const Sequence& s) { return 0.1 * static_cast<double>(s.size()) + 0.01 * double(s.empty() ? 0 : s.back()); });
  for (auto unit : {BeamUnit::kToken, BeamUnit::kBlock})
    for (int64_t width : {1, 2, 3}) {
      auto o = beam_options(width, unit);
      const auto r = beam_search(toy, path_root(), o, path_rules());
      EXPECT_EQ(r.transitions, toy.steps);
      EXPECT_LE(r.transitions, width * width * o.max_tokens) << "width " << width;
      if (width == 1) EXPECT_EQ(r.transitions, 6);
      toy.steps = 0;
      o.max_transitions = 5;
      const auto capped = beam_search(toy, path_root(), o, path_rules());
      EXPECT_LE(capped.transitions, 5);
      EXPECT_EQ(capped.transitions, toy.steps);
      EXPECT_FALSE(capped.tokens.empty());
      toy.steps = 0;
    }
}

TEST(Beam, RefusesAnEmptyBeamOrARootThatIsNotOneState) {
  PathModel toy([](const Sequence&) { return std::vector<double>{3, 2, 1, 0}; }, [](const Sequence&) { return 0.0; });
  EXPECT_THROW(beam_search(toy, path_root(), beam_options(0, BeamUnit::kToken), path_rules()), std::invalid_argument);
  EXPECT_THROW(beam_search(toy, {torch::zeros({2, 1, 1}, torch::kDouble), {}}, beam_options(2, BeamUnit::kToken), path_rules()),
               std::invalid_argument);
}

TEST(Beam, WidthOneOnExactStepsIsGreedyDecoding) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  model::Backbone backbone(testing::tiny_model_config());
  backbone->eval();
  const std::vector<int64_t> prompt = {1, 7, 3, 9, 4};
  model::SamplingOptions greedy_sampling;
  greedy_sampling.temperature = 0;
  const auto greedy = model::generate(backbone, prompt, 12, greedy_sampling, /*seed=*/0);
  model::ModelState state;
  backbone->prefill(torch::tensor(prompt, torch::kLong).unsqueeze(0), state);
  ExactModel exact(backbone);
  BeamRules rules;
  rules.verdict = [](const Sequence&, int64_t) { return model::StepVerdict::kTake; };
  rules.ends_block = [](const Sequence&) { return true; };
  BeamOptions o;
  o.width = 1;
  o.max_tokens = 12;
  const auto r = beam_search(exact, states_of(state), o, rules);
  EXPECT_EQ(r.tokens, greedy);
  EXPECT_EQ(r.transitions, 12);
  // A wider beam ranks by value and still decodes tokens the backbone's step reaches.
  o.width = 3;
  const auto wide = beam_search(exact, states_of(state), o, rules);
  EXPECT_EQ(wide.tokens.size(), 12u);
  // The root's caches are read, never written: the same search again finds the same.
  EXPECT_EQ(beam_search(exact, states_of(state), o, rules).tokens, wide.tokens);
  EXPECT_LE(wide.transitions, 9 * 12);
}

}  // namespace
}  // namespace crsm::search
