#pragma once

// Deliberative generation (SPEC §9, the seed's think_and_generate). The generator steps
// the backbone in recurrent mode; at each position a plan may choose the token and steer
// the state: the planned latents are injected inside the step that consumes the token,
// between blocks, with alpha_l = injection_rate * sigmoid(conf_l) * delta_decay^lag.
//
// Where plans come from is one choice, made once:
// - none (no planner): every token is sampled, as plain generation samples it;
// - sync: the generator searches from its own state at every position and waits (lag 0):
//   deterministic for a seed, for evaluation;
// - async: a planner thread takes the newest request (a copy of the state at the
//   captured step, tagged with the generation id), projects it forward `lag` steps with
//   the latent model's greedy actions, searches, and returns a plan for position
//   captured + lag. The lag is what the planner expects the generator to have advanced
//   by the time it answers. A buffer keyed by position applies each plan exactly at the
//   step it was planned for; plans from another generation, planned further ahead than
//   max_lag, or arriving after their position has passed are dropped and counted.
// With the search's reuse_subtree, a sync search starts from the subtree the previous
// position's search left under the token it chose (that token is always taken).
// Positions count tokens consumed: the plan for position p chooses the p-th token.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/packed.h"
#include "model/generation.h"
#include "search/latent_model.h"
#include "search/mcts.h"

namespace crsm::search {

enum class PlanTiming { kSync, kAsync };

// alpha_l = injection_rate * sigmoid(confidence_l) * delta_decay^lag, [L] -> [L].
at::Tensor injection_alpha(const at::Tensor& confidence, double injection_rate, double delta_decay,
                           int64_t lag);

struct Plan {
  int64_t generation = 0;
  int64_t captured_step = 0;  // the generator's position when it asked
  int64_t position = 0;       // the position the plan chooses the token of
  int64_t action = -1;
  at::Tensor target;          // [L, D]
  at::Tensor confidence;      // [L]
  SearchStats search;

  int64_t lag() const { return position - captured_step; }
};

struct DeliberationStats {
  int64_t tokens = 0;
  int64_t planned_tokens = 0;  // tokens the planner chose
  int64_t injections = 0;
  int64_t dropped_generation = 0, dropped_lag = 0, dropped_late = 0;
  std::map<int64_t, int64_t> lags;     // lag of each applied plan -> count
  std::vector<double> injected_norm;   // sum over injections of ||delta h_l||, per layer
  int64_t searches = 0, simulations = 0, max_depth = 0, nodes = 0;
  int64_t reused_nodes = 0;  // over searches: nodes a search started with (reuse_subtree)
  int64_t replayed = 0;      // over searches: transitions recomputed for states not held
  double search_seconds = 0, depth_sum = 0;
  std::vector<double> target_delta;   // sum over searches of ||target_l - h_l||, per layer

  int64_t dropped() const { return dropped_generation + dropped_lag + dropped_late; }
  void add_search(const SearchStats& s);
  // Another generation's statistics added in (sums; the deepest of the two max_depths).
  void add(const DeliberationStats& other);
};

// The fields, listed once for base/packed.h (statistics cross ranks this way).
template <typename A, typename S, base::if_is<S, DeliberationStats> = 0>
void fields(A& a, S& s) {
  a(s.tokens, s.planned_tokens, s.injections, s.dropped_generation, s.dropped_lag, s.dropped_late, s.lags,
    s.injected_norm, s.searches, s.simulations, s.max_depth, s.nodes, s.reused_nodes, s.replayed, s.search_seconds, s.depth_sum,
    s.target_delta);
}

// The plans of one generation waiting for their position.
class PlanBuffer {
 public:
  PlanBuffer(int64_t generation, int64_t max_lag) : generation_(generation), max_lag_(max_lag) {}
  // Keeps the plan if it is for this generation, within max_lag and not yet passed
  // (`position`: the generator's current one); counts it as dropped otherwise.
  void offer(Plan plan, int64_t position, DeliberationStats& stats);
  // The plan for `position`, if one is waiting; drops those for earlier positions.
  std::optional<Plan> take(int64_t position, DeliberationStats& stats);

 private:
  int64_t generation_, max_lag_;
  std::map<int64_t, Plan> plans_;
};

struct DeliberationOptions {
  PlanTiming timing = PlanTiming::kSync;
  SearchOptions search;
  double injection_rate = 0.1;
  double delta_decay = 0.9;
  int64_t max_lag = 4;
  model::SamplingOptions sampling;
  // Called by the planner thread before each search, with the request's generation and
  // captured step: tests delay or hold plans with it.
  std::function<void(int64_t generation, int64_t captured_step)> before_search;
};

// One position of a generation, as the generator chose it: the token, the per-layer
// values [L] of the state it was chosen from, and the plan that chose it (or null).
struct TokenStep {
  int64_t token = -1;
  at::Tensor values;
  const Plan* plan = nullptr;
};

using model::StepVerdict;
using StepObserver = std::function<StepVerdict(const TokenStep&)>;

class AsyncPlanner;

// Generates with a planner. The latent model plans (dynamics or exact); the backbone
// generates. One Deliberator serves many generations, each with its own id. Without a
// planner (null) it generates as model::generate does; with injection_rate 0 a plan
// chooses the token and the step is a plain one.
class Deliberator {
 public:
  Deliberator(model::Backbone backbone, std::shared_ptr<LatentModel> planner, DeliberationOptions options);
  ~Deliberator();
  Deliberator(const Deliberator&) = delete;  // the planner thread holds this one's options
  Deliberator& operator=(const Deliberator&) = delete;

  // As model::generate, with plans; stats() then describes this generation.
  std::vector<int64_t> generate(const std::vector<int64_t>& prompt, int64_t max_new_tokens, uint64_t seed,
                                int64_t stop_token = -1, const std::function<void(int64_t)>& on_token = {});
  // The same loop, with the observer deciding at every position whether to go on.
  std::vector<int64_t> generate(const std::vector<int64_t>& prompt, int64_t max_new_tokens, uint64_t seed,
                                const StepObserver& observe);
  const DeliberationStats& stats() const { return stats_; }
  // Plans the planner thread has handed over, over all generations (tests wait on it).
  int64_t plans_delivered() const;

 private:
  std::optional<Plan> plan_for(const model::ModelState& state, PlanBuffer& buffer);
  model::StepOutput step(const at::Tensor& token, model::ModelState& state, const std::optional<Plan>& plan);

  model::Backbone backbone_;
  std::shared_ptr<LatentModel> planner_;
  DeliberationOptions options_;
  std::unique_ptr<AsyncPlanner> async_;
  // Sync plans with reuse_subtree: the last search's chosen subtree, the next one's tree.
  std::shared_ptr<const Subtree> kept_;
  int64_t generation_ = 0;
  DeliberationStats stats_;
};

}  // namespace crsm::search
