#include "search/deliberation.h"

#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

namespace crsm::search {

at::Tensor injection_alpha(const at::Tensor& confidence, double injection_rate, double delta_decay,
                           int64_t lag) {
  return injection_rate * std::pow(delta_decay, static_cast<double>(lag)) * torch::sigmoid(confidence);
}

void DeliberationStats::add_search(const SearchStats& s) {
  searches += 1;
  simulations += s.simulations;
  max_depth = std::max(max_depth, s.max_depth);
  depth_sum += s.mean_depth * static_cast<double>(s.simulations);
  nodes += s.nodes;
  reused_nodes += s.reused_nodes;
  replayed += s.replayed;
  search_seconds += s.seconds;
  target_delta.resize(s.target_delta.size(), 0.0);
  for (size_t l = 0; l < s.target_delta.size(); ++l) target_delta[l] += s.target_delta[l];
}

void DeliberationStats::add(const DeliberationStats& o) {
  const auto add_per_layer = [](std::vector<double>& sum, const std::vector<double>& more) {
    sum.resize(std::max(sum.size(), more.size()), 0.0);
    for (size_t l = 0; l < more.size(); ++l) sum[l] += more[l];
  };
  tokens += o.tokens;
  planned_tokens += o.planned_tokens;
  injections += o.injections;
  dropped_generation += o.dropped_generation;
  dropped_lag += o.dropped_lag;
  dropped_late += o.dropped_late;
  for (const auto& [lag, n] : o.lags) lags[lag] += n;
  add_per_layer(injected_norm, o.injected_norm);
  searches += o.searches;
  simulations += o.simulations;
  max_depth = std::max(max_depth, o.max_depth);
  nodes += o.nodes;
  reused_nodes += o.reused_nodes;
  replayed += o.replayed;
  search_seconds += o.search_seconds;
  depth_sum += o.depth_sum;
  add_per_layer(target_delta, o.target_delta);
}

void PlanBuffer::offer(Plan plan, int64_t position, DeliberationStats& stats) {
  if (plan.generation != generation_) {
    stats.dropped_generation += 1;
  } else if (plan.lag() > max_lag_) {
    stats.dropped_lag += 1;
  } else if (plan.position < position) {
    stats.dropped_late += 1;
  } else {
    if (plans_.count(plan.position)) stats.dropped_late += 1;  // superseded by the newer plan
    plans_[plan.position] = std::move(plan);
  }
}

std::optional<Plan> PlanBuffer::take(int64_t position, DeliberationStats& stats) {
  while (!plans_.empty() && plans_.begin()->first < position) {
    plans_.erase(plans_.begin());
    stats.dropped_late += 1;
  }
  auto it = plans_.find(position);
  if (it == plans_.end()) return std::nullopt;
  Plan plan = std::move(it->second);
  plans_.erase(it);
  return plan;
}

namespace {

struct PlanRequest {
  int64_t generation = 0, captured_step = 0;
  States state;
};

// Projects the request's state `lag` steps ahead along the model's greedy actions and
// searches from there.
Plan plan_ahead(LatentModel& model, const PlanRequest& request, int64_t lag, const SearchOptions& options) {
  auto e = model.evaluate(request.state);
  for (int64_t i = 0; i < lag; ++i) e = model.step(e.states, {e.logits[0].argmax().item<int64_t>()});
  auto sync_only = options;  // a plan ahead of the generator has no next search to hand a subtree to
  sync_only.reuse_subtree = false;
  auto result = run_search(model, e.states, sync_only);
  return {request.generation, request.captured_step, request.captured_step + lag, result.action,
          result.target, result.confidence, std::move(result.stats)};
}

}  // namespace

// The planner thread: one request waits at a time (a newer one replaces it), results
// are collected by the generator.
class AsyncPlanner {
 public:
  AsyncPlanner(std::shared_ptr<LatentModel> model, const DeliberationOptions& options)
      : model_(std::move(model)), options_(options), thread_([this] { loop(); }) {}

  ~AsyncPlanner() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void request(PlanRequest r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting_ = std::move(r);
    }
    cv_.notify_all();
  }

  std::vector<Plan> collect() {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return std::exchange(done_, {});
  }

  void set_position(int64_t position) { position_.store(position); }
  int64_t delivered() const { return delivered_.load(); }

 private:
  void loop() {
    torch::NoGradGuard no_grad;
    for (;;) {
      PlanRequest r;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || waiting_.has_value(); });
        if (stop_) return;
        r = std::move(*waiting_);
        waiting_.reset();
      }
      try {
        deliver(plan(r));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = std::current_exception();
      }
    }
  }

  // The lag: the steps the generator has already taken since the request, plus those it
  // is expected to take while this search runs (a running mean of the last searches).
  Plan plan(const PlanRequest& r) {
    if (options_.before_search) options_.before_search(r.generation, r.captured_step);
    const int64_t picked_up = position_.load();
    const int64_t ahead = static_cast<int64_t>(std::ceil(steps_per_search_));
    const int64_t lag = std::max<int64_t>(1, picked_up - r.captured_step + ahead);
    Plan p = plan_ahead(*model_, r, lag, options_.search);
    steps_per_search_ = 0.5 * steps_per_search_ + 0.5 * static_cast<double>(position_.load() - picked_up);
    return p;
  }

  void deliver(Plan p) {
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(std::move(p));
    delivered_ += 1;
  }

  std::shared_ptr<LatentModel> model_;
  const DeliberationOptions& options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<PlanRequest> waiting_;
  std::vector<Plan> done_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::atomic<int64_t> position_{0}, delivered_{0};
  double steps_per_search_ = 1.0;  // the planner thread's own
  std::thread thread_;             // last: starts once everything above exists
};

Deliberator::Deliberator(model::Backbone backbone, std::shared_ptr<LatentModel> planner,
                         DeliberationOptions options)
    : backbone_(std::move(backbone)), planner_(std::move(planner)), options_(std::move(options)) {
  backbone_->eval();
  if (planner_ && options_.timing == PlanTiming::kAsync) async_ = std::make_unique<AsyncPlanner>(planner_, options_);
}

Deliberator::~Deliberator() = default;

int64_t Deliberator::plans_delivered() const { return async_ ? async_->delivered() : stats_.searches; }

std::optional<Plan> Deliberator::plan_for(const model::ModelState& state, PlanBuffer& buffer) {
  const int64_t position = state.position;
  if (!planner_) return std::nullopt;
  if (!async_) {
    auto result = run_search(*planner_, states_of(state), options_.search, kept_.get());
    kept_ = result.chosen_subtree;
    stats_.add_search(result.stats);
    return Plan{generation_, position, position, result.action, result.target, result.confidence,
                std::move(result.stats)};
  }
  async_->set_position(position);
  for (auto& plan : async_->collect()) {
    stats_.add_search(plan.search);
    buffer.offer(std::move(plan), position, stats_);
  }
  async_->request({generation_, position, states_of(state)});
  return buffer.take(position, stats_);
}

std::vector<int64_t> Deliberator::generate(const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                                           uint64_t seed, int64_t stop_token,
                                           const std::function<void(int64_t)>& on_token) {
  return generate(prompt, max_new_tokens, seed, [&](const TokenStep& s) {
    if (s.token == stop_token) return StepVerdict::kStop;
    if (on_token) on_token(s.token);
    return StepVerdict::kTake;
  });
}

std::vector<int64_t> Deliberator::generate(const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                                           uint64_t seed, const StepObserver& observe) {
  torch::NoGradGuard no_grad;
  stats_ = {};
  kept_.reset();
  generation_ += 1;
  PlanBuffer buffer(generation_, options_.max_lag);
  std::mt19937_64 rng(seed);
  std::optional<Plan> plan;  // the plan that chose this position's token, if one did
  model::DecodingHooks hooks;
  hooks.choose = [&](const model::StepOutput& out, const model::ModelState& state) {
    plan = plan_for(state, buffer);
    return plan ? plan->action : model::sample_token(out.logits[0], options_.sampling, rng);
  };
  hooks.observe = [&](int64_t token, const model::StepOutput& out) {
    const StepVerdict verdict = observe({token, out.values[0], plan ? &*plan : nullptr});
    if (verdict == StepVerdict::kStop) return verdict;
    stats_.tokens += 1;
    if (plan) stats_.planned_tokens += 1, stats_.lags[plan->lag()] += 1;
    return verdict;
  };
  hooks.step = [&](const at::Tensor& token, model::ModelState& state) { return step(token, state, plan); };
  return model::decode(backbone_, prompt, max_new_tokens, hooks);
}

// The step that consumes a taken token: with the plan's target injected when a plan chose
// it and injection is on, a plain one otherwise.
model::StepOutput Deliberator::step(const at::Tensor& token, model::ModelState& state, const std::optional<Plan>& plan) {
  if (!plan || options_.injection_rate == 0) return backbone_->step(token, state);
  const auto alpha = injection_alpha(plan->confidence, options_.injection_rate, options_.delta_decay, plan->lag());
  model::Injection injection{plan->target.unsqueeze(0), alpha.unsqueeze(0), {}};
  auto out = backbone_->step(token, state, &injection);
  const auto moved = injection.moved[0].to(torch::kCPU, torch::kDouble).contiguous();
  stats_.injected_norm.resize(moved.numel(), 0.0);
  for (int64_t l = 0; l < moved.numel(); ++l) stats_.injected_norm[l] += moved.data_ptr<double>()[l];
  stats_.injections += 1;
  return out;
}

}  // namespace crsm::search
