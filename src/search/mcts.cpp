#include "search/mcts.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <list>
#include <stdexcept>
#include <unordered_map>

#include "base/error.h"

namespace crsm::search {

SearchOptions SearchOptions::from(const SearchConfig& config) {
  SearchOptions o;
  o.c_puct = config.c_puct;
  o.n_simulations = config.n_simulations;
  o.top_k = config.top_k;
  o.leaf_batch = config.leaf_batch;
  return o;
}

namespace {

struct Node {
  int32_t parent = -1;
  int32_t first_child = -1;
  int32_t num_children = 0;
  int32_t depth = 0;
  int64_t action = -1;
  float prior = 0;
  int32_t visits = 0;
  int32_t pending = 0;  // virtual visits of paths selected but not yet backed up
  double value_sum = 0;
  bool evaluated = false;
};

// Node states, least recently used out first; the root is held apart and never leaves.
class StateCache {
 public:
  StateCache(States root, int64_t capacity) : root_(std::move(root)), capacity_(capacity) {}

  const States* find(int32_t node) {
    if (node == 0) return &root_;
    auto it = map_.find(node);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.second);
    return &it->second.first;
  }

  void put(int32_t node, States state) {
    if (node == 0 || map_.count(node)) return;
    order_.push_front(node);
    map_.emplace(node, std::make_pair(std::move(state), order_.begin()));
    while (static_cast<int64_t>(map_.size()) > capacity_) {
      map_.erase(order_.back());
      order_.pop_back();
    }
  }

 private:
  States root_;
  int64_t capacity_;
  std::list<int32_t> order_;
  std::unordered_map<int32_t, std::pair<States, std::list<int32_t>::iterator>> map_;
};

class Tree {
 public:
  Tree(LatentModel& model, const States& root, const SearchOptions& options)
      : model_(model), options_(options),
        cache_(root, std::max<int64_t>(1, options.cache_bytes / std::max<int64_t>(1, root.bytes_per_state()))) {
    nodes_.emplace_back();
    values_.emplace_back();
    const auto eval = model_.evaluate(root);
    expand({0}, eval);
  }

  void run(SearchStats& stats) {
    while (stats.simulations < options_.n_simulations) {
      const int64_t want = std::min(options_.leaf_batch, options_.n_simulations - stats.simulations);
      const auto leaves = select_leaves(want);
      const auto expansion = step_into(leaves, stats);
      expand(leaves, expansion);
      const auto v = model::consensus_value(expansion.values.to(torch::kCPU, torch::kDouble)).contiguous();
      for (size_t i = 0; i < leaves.size(); ++i) backup(leaves[i], v.data_ptr<double>()[i]);
      for (int32_t leaf : leaves) {
        stats.max_depth = std::max<int64_t>(stats.max_depth, nodes_[leaf].depth);
        depth_sum_ += nodes_[leaf].depth;
      }
      stats.simulations += static_cast<int64_t>(leaves.size());
      stats.network_calls += 1;
    }
    stats.nodes = static_cast<int64_t>(nodes_.size());
    stats.mean_depth = stats.simulations > 0 ? static_cast<double>(depth_sum_) / stats.simulations : 0;
  }

  SearchResult result(SearchStats& stats) {
    SearchResult r;
    const Node& root = nodes_[0];
    int32_t best = -1;
    for (int32_t c = root.first_child; c < root.first_child + root.num_children; ++c) {
      r.actions.push_back(nodes_[c].action);
      r.visits.push_back(nodes_[c].visits);
      if (best < 0 || nodes_[c].visits > nodes_[best].visits) best = c;
    }
    r.action = nodes_[best].action;
    if (!nodes_[best].evaluated) throw std::logic_error("search: the chosen child was never evaluated");
    r.confidence = values_[best];
    r.target = state_of(best, stats).latents[0];
    const auto root_latents = cache_.find(0)->latents[0];
    const auto delta = (r.target - root_latents).norm(2, -1).to(torch::kCPU, torch::kDouble).contiguous();
    stats.target_delta.assign(delta.data_ptr<double>(), delta.data_ptr<double>() + delta.numel());
    const auto conf = r.confidence.to(torch::kCPU, torch::kDouble).contiguous();
    stats.chosen_values.assign(conf.data_ptr<double>(), conf.data_ptr<double>() + conf.numel());
    return r;
  }

 private:
  double puct(const Node& parent, const Node& child) const {
    const int32_t n = child.visits + child.pending;
    const double q = n > 0 ? child.value_sum / n : 0.0;
    const double parent_n = std::max(1, parent.visits + parent.pending);
    return q + options_.c_puct * child.prior * std::sqrt(parent_n) / (1.0 + n);
  }

  int32_t select_child(int32_t node) const {
    const Node& p = nodes_[node];
    int32_t best = -1;
    double best_score = -INFINITY;
    for (int32_t c = p.first_child; c < p.first_child + p.num_children; ++c) {
      const Node& child = nodes_[c];
      if (child.visits + child.pending == 0) return c;  // unvisited first, by prior
      const double score = puct(p, child);
      if (score > best_score) best_score = score, best = c;
    }
    return best;
  }

  // Up to `want` distinct unevaluated leaves, each path holding a virtual visit.
  std::vector<int32_t> select_leaves(int64_t want) {
    std::vector<int32_t> leaves;
    while (static_cast<int64_t>(leaves.size()) < want) {
      int32_t node = 0;
      while (nodes_[node].evaluated) node = select_child(node);
      if (nodes_[node].pending > 0) break;  // taken by an earlier path of this batch
      for (int32_t n = node; n >= 0; n = nodes_[n].parent) nodes_[n].pending += 1;
      leaves.push_back(node);
    }
    return leaves;
  }

  // The state of an evaluated node, replaying from its nearest cached ancestor if evicted.
  States state_of(int32_t node, SearchStats& stats) {
    if (const States* s = cache_.find(node)) return *s;
    std::vector<int32_t> chain;  // node, its parent, ... up to (not including) a cached one
    for (int32_t n = node; !cache_.find(n); n = nodes_[n].parent) chain.push_back(n);
    States state = *cache_.find(nodes_[chain.back()].parent);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      state = model_.step(state, {nodes_[*it].action}).states;
      stats.replayed += 1;
      cache_.put(*it, state);
    }
    return state;
  }

  // One batched step from each leaf's parent along the leaf's action.
  Expansion step_into(const std::vector<int32_t>& leaves, SearchStats& stats) {
    std::vector<States> parents;
    parents.reserve(leaves.size());
    std::vector<int64_t> actions;
    for (int32_t leaf : leaves) {
      parents.push_back(state_of(nodes_[leaf].parent, stats));
      actions.push_back(nodes_[leaf].action);
    }
    std::vector<const States*> parts;
    for (const auto& p : parents) parts.push_back(&p);
    return model_.step(States::join(parts), actions);
  }

  // Gives each node its top_k children by policy; caches the nodes' states.
  void expand(const std::vector<int32_t>& at, const Expansion& e) {
    const int64_t k = std::min<int64_t>(options_.top_k, e.logits.size(-1));
    const auto probs = torch::softmax(e.logits.to(torch::kFloat), -1);
    const auto [prior, action] = probs.topk(k, -1);  // sorted, most likely first
    const auto p = prior.to(torch::kCPU).contiguous();
    const auto a = action.to(torch::kCPU).contiguous();
    const auto rows = e.states.rows();
    const auto values = e.values.unbind(0);
    for (size_t i = 0; i < at.size(); ++i) {
      const int32_t n = at[i];
      nodes_[n].evaluated = true;
      nodes_[n].first_child = static_cast<int32_t>(nodes_.size());
      nodes_[n].num_children = static_cast<int32_t>(k);
      values_[n] = values[i];
      for (int64_t j = 0; j < k; ++j) {
        Node child;
        child.parent = n;
        child.depth = nodes_[n].depth + 1;
        child.action = a.data_ptr<int64_t>()[i * k + j];
        child.prior = p.data_ptr<float>()[i * k + j];
        nodes_.push_back(child);
        values_.emplace_back();
      }
      cache_.put(n, rows[i]);
    }
  }

  void backup(int32_t leaf, double value) {
    for (int32_t n = leaf; n >= 0; n = nodes_[n].parent) {
      nodes_[n].pending -= 1;
      nodes_[n].visits += 1;
      nodes_[n].value_sum += value;
    }
  }

  LatentModel& model_;
  const SearchOptions& options_;
  StateCache cache_;
  std::vector<Node> nodes_;
  std::vector<at::Tensor> values_;  // per evaluated node: its per-layer values [L]
  int64_t depth_sum_ = 0;
};

}  // namespace

SearchResult run_search(LatentModel& model, const States& root, const SearchOptions& options) {
  if (root.size() != 1) throw std::invalid_argument("search: the root must be one state");
  if (model.needs_caches() && root.caches.empty())
    throw std::invalid_argument("search: exact transitions need the root's layer caches");
  if (options.n_simulations < 1 || options.top_k < 1 || options.leaf_batch < 1)
    throw std::invalid_argument("search: n_simulations, top_k and leaf_batch must be at least 1");
  const auto start = std::chrono::steady_clock::now();
  SearchStats stats;
  // Latents alone where the model steps without caches: states then join alike.
  Tree tree(model, model.needs_caches() ? root : States{root.latents, {}}, options);
  tree.run(stats);
  auto result = tree.result(stats);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.stats = std::move(stats);
  return result;
}

}  // namespace crsm::search
