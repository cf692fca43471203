// MCTS over latent states (SPEC §9): on a toy with known values, against a plain PUCT
// reference; batched leaves with virtual loss; lazy states against cached ones; exact
// transitions against the backbone's own step.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "../model/test_helpers.h"
#include "model/backbone.h"
#include "search/latent_model.h"
#include "search/mcts.h"

namespace crsm::search {
namespace {

// A toy model whose "latent" is the path's first action (+1; 0 at the root), kept by every
// later step. Each of its states has the same policy `logits`; the value of a state is
// value[first action], whatever follows: so the root's visit counts follow PUCT on the
// root alone, which a few lines below compute independently.
class ToyModel : public LatentModel {
 public:
  ToyModel(std::vector<double> logits, std::vector<double> values)
      : logits_(torch::tensor(logits, torch::kDouble)), values_(std::move(values)) {}

  Expansion evaluate(const States& states) override { return at(states.latents); }
  Expansion step(const States& states, const std::vector<int64_t>& actions) override {
    auto next = states.latents.clone();
    for (size_t i = 0; i < actions.size(); ++i)
      if (next[i][0][0].item<double>() == 0) next[i][0][0] = static_cast<double>(actions[i] + 1);
    calls += 1;
    return at(next);
  }
  bool needs_caches() const override { return false; }

  int64_t calls = 0;

 private:
  Expansion at(const at::Tensor& latents) {
    const int64_t n = latents.size(0);
    auto values = torch::zeros({n, 1}, torch::kDouble);
    for (int64_t i = 0; i < n; ++i) {
      const auto first = static_cast<int64_t>(latents[i][0][0].item<double>());
      values[i][0] = first == 0 ? 0.0 : values_[first - 1];
    }
    return {{latents, {}}, logits_.unsqueeze(0).expand({n, -1}), values};
  }

  at::Tensor logits_;
  std::vector<double> values_;
};

States toy_root() { return {torch::zeros({1, 1, 1}, torch::kDouble), {}}; }

// PUCT at the root alone, sequentially: visits per action for the toy above. With
// `normalize`, Q is rescaled by the lowest and highest Q in the tree: in the toy every
// node's Q is its first action's value (the root's, a mean of those, lies between).
std::vector<int64_t> reference_root_visits(const std::vector<double>& logits, const std::vector<double>& values,
                                           int64_t top_k, int64_t simulations, double c_puct, bool normalize = false) {
  const auto probs = torch::softmax(torch::tensor(logits, torch::kDouble), 0);
  const auto [p, order] = probs.topk(top_k);
  std::vector<int64_t> visits(top_k, 0);
  std::vector<double> sums(top_k, 0.0);
  for (int64_t s = 0; s < simulations; ++s) {
    int64_t pick = -1;
    for (int64_t i = 0; i < top_k && pick < 0; ++i)
      if (visits[i] == 0) pick = i;
    if (pick < 0) {
      double best = -INFINITY, lo = INFINITY, hi = -INFINITY;
      for (int64_t i = 0; i < top_k; ++i) lo = std::min(lo, sums[i] / visits[i]), hi = std::max(hi, sums[i] / visits[i]);
      for (int64_t i = 0; i < top_k; ++i) {
        const double q = normalize && hi > lo ? (sums[i] / visits[i] - lo) / (hi - lo) : sums[i] / visits[i];
        const double u = q + c_puct * p[i].item<double>() * std::sqrt(double(s)) / (1.0 + visits[i]);
        if (u > best) best = u, pick = i;
      }
    }
    visits[pick] += 1;
    sums[pick] += values[order[pick].item<int64_t>()];
  }
  return visits;
}

// Priors that favour action 0, values that favour action 2 (a third of the way down).
const std::vector<double> kLogits = {1.2, 0.9, 0.5, 0.1, -0.5, -2.0};
const std::vector<double> kValues = {0.30, 0.20, 0.90, 0.40, 0.95, 0.10};  // 4 is outside top_k

SearchOptions toy_options(int64_t simulations, int64_t leaf_batch) {
  SearchOptions o;
  o.n_simulations = simulations;
  o.top_k = 4;
  o.leaf_batch = leaf_batch;
  o.c_puct = 1.0;
  return o;
}

TEST(Mcts, SequentialSearchFollowsPuctOnAToyWithKnownValues) {
  ToyModel toy(kLogits, kValues);
  const auto r = run_search(toy, toy_root(), toy_options(200, 1));
  EXPECT_EQ(r.action, 2);
  EXPECT_EQ(r.actions, (std::vector<int64_t>{0, 1, 2, 3}));  // the top 4 by policy, most likely first
  EXPECT_EQ(r.visits, reference_root_visits(kLogits, kValues, 4, 200, 1.0));
  EXPECT_EQ(r.stats.simulations, 200);
  EXPECT_EQ(r.stats.network_calls, 200);
  EXPECT_NEAR(r.confidence.item<double>(), 0.90, 1e-12);
  EXPECT_GT(r.stats.max_depth, 1);
}

TEST(Mcts, TheRootChoiceByValueTakesTheHighestMeanValueWhereVisitsFollowThePrior) {
  ToyModel toy(kLogits, kValues);
  auto o = toy_options(12, 1);
  o.c_puct = 20;  // visits follow the prior
  const auto by_visits = run_search(toy, toy_root(), o);
  EXPECT_EQ(by_visits.action, 0);
  o.root_choice = RootChoice::kValue;
  const auto by_value = run_search(toy, toy_root(), o);
  EXPECT_EQ(by_value.visits, by_visits.visits);  // the same search, another choice
  EXPECT_EQ(by_value.action, 2);
  EXPECT_NEAR(by_value.confidence.item<double>(), 0.90, 1e-12);
  // The root's children as the search left them: prior, visits, Q (each child's value
  // is its first action's, at any depth).
  const auto priors = torch::softmax(torch::tensor(kLogits, torch::kDouble), 0);
  ASSERT_EQ(by_value.stats.root.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const auto& c = by_value.stats.root[i];
    EXPECT_EQ(c.action, static_cast<int64_t>(i));
    EXPECT_NEAR(c.prior, priors[static_cast<int64_t>(i)].item<double>(), 1e-6);
    EXPECT_EQ(c.visits, by_value.visits[i]);
    EXPECT_NEAR(c.q, kValues[i], 1e-12);
  }
}

TEST(Mcts, NormalizedQWeighsValuesThatDifferByHundredthsAgainstThePrior) {
  // Values within 0.03 of each other: raw, the prior decides; rescaled to [0, 1], the best
  // value's child takes most visits.
  const std::vector<double> close = {0.50, 0.51, 0.53, 0.52, 0.0, 0.0};
  ToyModel raw_toy(kLogits, close), normalized_toy(kLogits, close);
  auto o = toy_options(200, 1);
  const auto raw = run_search(raw_toy, toy_root(), o);
  EXPECT_EQ(raw.visits, reference_root_visits(kLogits, close, 4, 200, 1.0));
  EXPECT_EQ(raw.action, 0);
  o.normalize_q = true;
  const auto normalized = run_search(normalized_toy, toy_root(), o);
  EXPECT_EQ(normalized.visits, reference_root_visits(kLogits, close, 4, 200, 1.0, /*normalize=*/true));
  EXPECT_EQ(normalized.action, 2);
}

// Sequential halving at the root, written out plainly for the toy (whose every node's Q is
// its first action's value): visits per child and the answer.
std::pair<std::vector<int64_t>, int64_t> reference_halving(const std::vector<double>& logits,
                                                           const std::vector<double>& values, int64_t top_k,
                                                           int64_t simulations) {
  const auto probs = torch::softmax(torch::tensor(logits, torch::kDouble), 0);
  std::vector<int64_t> remaining, visits(top_k, 0);
  for (int64_t i = 0; i < std::min(top_k, simulations); ++i) remaining.push_back(i);
  const auto phases = static_cast<int64_t>(std::ceil(std::log2(double(remaining.size()))));
  const int64_t per_phase = std::max<int64_t>(1, simulations / std::max<int64_t>(1, phases));
  int64_t target = std::max<int64_t>(1, per_phase / int64_t(remaining.size()));
  const auto score = [&](const std::vector<int64_t>& among) {
    double lo = INFINITY, hi = -INFINITY;
    int64_t most = 0;
    for (int64_t c : among) lo = std::min(lo, values[c]), hi = std::max(hi, values[c]), most = std::max(most, visits[c]);
    std::vector<double> s;
    for (int64_t c : among)
      s.push_back(std::log(probs[c].item<double>()) + (50.0 + double(most)) * 0.1 * (hi > lo ? (values[c] - lo) / (hi - lo) : 0.0));
    return s;
  };
  for (int64_t n = 0; n < simulations; ++n) {
    int64_t pick = remaining[0];
    for (int64_t c : remaining)
      if (visits[c] < visits[pick]) pick = c;
    visits[pick] += 1;
    while (remaining.size() > 1 && std::all_of(remaining.begin(), remaining.end(), [&](int64_t c) { return visits[c] >= target; })) {
      const auto s = score(remaining);
      std::vector<size_t> order(remaining.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
      std::vector<int64_t> kept;
      for (size_t i = 0; i < (remaining.size() + 1) / 2; ++i) kept.push_back(remaining[order[i]]);
      std::sort(kept.begin(), kept.end());
      remaining = kept;
      target += std::max<int64_t>(1, per_phase / int64_t(remaining.size()));
    }
  }
  const auto s = score(remaining);
  return {visits, remaining[std::max_element(s.begin(), s.end()) - s.begin()]};
}

TEST(Mcts, SequentialHalvingAtTheRootFollowsAPlainReference) {
  for (int64_t simulations : {3, 8, 16, 50}) {
    ToyModel toy(kLogits, kValues);
    auto o = toy_options(simulations, 1);
    o.root_choice = RootChoice::kHalving;
    const auto r = run_search(toy, toy_root(), o);
    const auto [visits, action] = reference_halving(kLogits, kValues, 4, simulations);
    EXPECT_EQ(r.visits, visits) << simulations << " simulations";
    EXPECT_EQ(r.action, action) << simulations << " simulations";
  }
  // With enough simulations the value decides: action 2 (0.90) over the likelier 0 (0.30).
  ToyModel toy(kLogits, kValues);
  auto o = toy_options(16, 4);  // batched leaves spread over the candidates alike
  o.root_choice = RootChoice::kHalving;
  EXPECT_EQ(run_search(toy, toy_root(), o).action, 2);
}

TEST(Mcts, UnvisitedChildrenComeFirstInPolicyOrder) {
  ToyModel toy(kLogits, kValues);
  const auto r = run_search(toy, toy_root(), toy_options(4, 1));
  EXPECT_EQ(r.visits, (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(r.stats.max_depth, 1);
}

TEST(Mcts, BatchedLeavesWithVirtualLossFindTheSameBestAction) {
  ToyModel sequential(kLogits, kValues), batched(kLogits, kValues);
  const auto a = run_search(sequential, toy_root(), toy_options(200, 1));
  const auto b = run_search(batched, toy_root(), toy_options(200, 16));
  EXPECT_EQ(b.action, a.action);
  EXPECT_EQ(b.stats.simulations, 200);
  // One network call per iteration, not per simulation: virtual loss spreads a batch.
  EXPECT_LE(b.stats.network_calls, 200 / 8);
  EXPECT_EQ(batched.calls, b.stats.network_calls);
  int64_t total = 0;
  for (auto v : b.visits) total += v;
  EXPECT_EQ(total, 200);
  EXPECT_GT(b.visits[2], b.visits[0]);
}

TEST(Mcts, RefusesARootThatIsNotOneState) {
  ToyModel toy(kLogits, kValues);
  EXPECT_THROW(run_search(toy, {torch::zeros({2, 1, 1}, torch::kDouble), {}}, toy_options(4, 1)),
               std::invalid_argument);
}

// A real tiny backbone, and a dynamics model whose weights are not the zero-delta start.
struct RealModels {
  model::Backbone backbone{testing::tiny_model_config()};
  model::LatentDynamics dynamics{nullptr};
  model::ModelState state;

  RealModels() {
    torch::manual_seed(3);
    backbone = model::Backbone(testing::tiny_model_config());
    backbone->eval();
    const auto& c = backbone->config();
    dynamics = model::LatentDynamics(model::DynamicsConfig{model::DynamicsArch::kShared, c.num_layers, c.d_model, 0});
    torch::NoGradGuard no_grad;
    for (auto& p : dynamics->parameters()) p.normal_(0.0, 0.3);
    backbone->prefill(torch::tensor({{1, 7, 3, 9, 4}}, torch::kLong), state);
  }
};

void expect_same_search(const SearchResult& a, const SearchResult& b) {
  EXPECT_EQ(a.action, b.action);
  EXPECT_EQ(a.actions, b.actions);
  EXPECT_EQ(a.visits, b.visits);
  EXPECT_LE(testing::max_abs_diff(a.target, b.target), 1e-5);
  EXPECT_LE(testing::max_abs_diff(a.confidence, b.confidence), 1e-5);
}

TEST(Mcts, LazyStatesEqualCachedOnesForBothTransitions) {
  torch::NoGradGuard no_grad;
  RealModels m;
  ExactModel exact(m.backbone);
  DynamicsModel learned(m.backbone, m.dynamics);
  for (LatentModel* model : std::vector<LatentModel*>{&exact, &learned}) {
    SearchOptions kept;
    kept.n_simulations = 60;
    kept.top_k = 5;
    kept.leaf_batch = 4;
    SearchOptions evicted = kept;
    evicted.cache_bytes = 1;  // the fewest rows, leaf_batch + 2: most parents are replayed
    const auto root = states_of(m.state);
    const auto a = run_search(*model, root, kept);
    const auto b = run_search(*model, root, evicted);
    EXPECT_EQ(a.stats.replayed, 0);
    EXPECT_GT(b.stats.replayed, 0);
    EXPECT_GT(a.stats.max_depth, 1);
    expect_same_search(a, b);
  }
}

TEST(Mcts, ExactSearchReproducesTheBackbonesOwnStep) {
  torch::NoGradGuard no_grad;
  RealModels m;
  ExactModel exact(m.backbone);
  SearchOptions o;
  o.n_simulations = 24;
  o.top_k = 6;
  o.leaf_batch = 8;
  const auto r = run_search(exact, states_of(m.state), o);
  auto state = m.state;
  m.backbone->step(torch::tensor({r.action}, torch::kLong), state);
  EXPECT_LE(testing::max_abs_diff(r.target, state.latents[0]), 1e-6);
  // Its confidence is the value heads on that state; the stats measure the move.
  const auto values = m.backbone->predict_from_states(state.latents).values[0];
  EXPECT_LE(testing::max_abs_diff(r.confidence, values), 1e-6);
  const auto moved = (state.latents[0] - m.state.latents[0]).norm(2, -1);
  ASSERT_EQ(r.stats.target_delta.size(), 2u);
  for (int l = 0; l < 2; ++l) EXPECT_NEAR(r.stats.target_delta[l], moved[l].item<double>(), 1e-5);
  EXPECT_GT(r.stats.nodes, 24);
}

// The subtree under the chosen child carries its statistics into the next search, whose
// root is that child's state: the visits below it count, the new simulations add to them.
TEST(Mcts, AReusedSubtreeKeepsItsVisitsAndAddsTheNewSimulations) {
  ToyModel toy(kLogits, kValues);
  auto o = toy_options(40, 1);
  o.reuse_subtree = true;
  const auto first = run_search(toy, toy_root(), o);
  ASSERT_TRUE(first.chosen_subtree);
  const auto chosen = std::find(first.actions.begin(), first.actions.end(), first.action) - first.actions.begin();
  const int64_t kept_visits = first.visits[static_cast<size_t>(chosen)];
  ASSERT_GT(kept_visits, 1);
  // The toy's state after the chosen action: its first action, kept by every later step.
  const States next_root{torch::full({1, 1, 1}, static_cast<double>(first.action + 1), torch::kDouble), {}};
  const auto second = run_search(toy, next_root, o, first.chosen_subtree.get());
  EXPECT_GT(second.stats.reused_nodes, 0);
  int64_t visits = 0;
  for (int64_t v : second.visits) visits += v;
  EXPECT_EQ(visits, kept_visits - 1 + 40);  // the kept root's own visit was its evaluation
  const auto fresh = run_search(toy, next_root, o);
  EXPECT_EQ(fresh.stats.reused_nodes, 0);
  int64_t fresh_visits = 0;
  for (int64_t v : fresh.visits) fresh_visits += v;
  EXPECT_EQ(fresh_visits, 40);
  EXPECT_GT(second.stats.nodes, fresh.stats.nodes);
}

// On exact steps the kept states are replayed from the new root: the chosen target is
// still the backbone's own step.
TEST(Mcts, AReusedSubtreeOnExactStepsStillReachesTheBackbonesOwnStates) {
  torch::NoGradGuard no_grad;
  RealModels m;
  ExactModel exact(m.backbone);
  SearchOptions o;
  o.n_simulations = 30;
  o.top_k = 4;
  o.leaf_batch = 4;
  o.reuse_subtree = true;
  const auto first = run_search(exact, states_of(m.state), o);
  auto state = m.state;
  m.backbone->step(torch::tensor({first.action}, torch::kLong), state);
  const auto second = run_search(exact, states_of(state), o, first.chosen_subtree.get());
  EXPECT_GT(second.stats.reused_nodes, 0);
  m.backbone->step(torch::tensor({second.action}, torch::kLong), state);
  EXPECT_LE(testing::max_abs_diff(second.target, state.latents[0]), 1e-5);
  const auto values = m.backbone->predict_from_states(state.latents).values[0];
  EXPECT_LE(testing::max_abs_diff(second.confidence, values), 1e-5);
}

TEST(Mcts, DynamicsSearchStepsWithTheDynamicsModel) {
  torch::NoGradGuard no_grad;
  RealModels m;
  DynamicsModel learned(m.backbone, m.dynamics);
  SearchOptions o;
  o.n_simulations = 16;
  const auto r = run_search(learned, states_of(m.state), o);
  const auto expected = m.dynamics->step(m.state.latents, m.backbone->embed(torch::tensor({r.action}, torch::kLong)));
  EXPECT_LE(testing::max_abs_diff(r.target, expected[0]), 1e-6);
}

}  // namespace
}  // namespace crsm::search
