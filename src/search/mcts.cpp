#include "search/mcts.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <list>
#include <optional>
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
  o.root_choice = config.root_choice == "value"     ? RootChoice::kValue
                  : config.root_choice == "halving" ? RootChoice::kHalving
                                                    : RootChoice::kVisits;
  o.normalize_q = config.normalize_q;
  o.reuse_subtree = config.reuse_subtree;
  return o;
}

// Outside the anonymous namespace: a Subtree holds them.
struct MctsNode {
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
  int32_t batch = -1, row = -1;  // where its per-layer values are in batch_values_
};

struct Subtree {
  std::vector<MctsNode> nodes;  // nodes[0]: the chosen child, the next root
  at::Tensor values;            // [evaluated nodes, L]: batch 0 of the next tree
};

namespace {

using Node = MctsNode;

at::Tensor row_tensor(const std::vector<int32_t>& rows, const at::Device& device) {
  return torch::tensor(std::vector<int64_t>(rows.begin(), rows.end()), torch::kLong).to(device);
}

// Node states in the rows of one preallocated batch, so that a batch of parents is one
// gather and a batch of leaves one scatter. The root holds row 0 and never leaves; the
// others go least recently used first, except rows pinned for the batch being assembled.
class StatePool {
 public:
  StatePool(const States& root, int64_t capacity)
      : rows_(root.empty_like(capacity)), pinned_(capacity, false), device_(root.latents.device()) {
    rows_.assign(row_tensor({0}, device_), root);
    for (int32_t r = static_cast<int32_t>(capacity) - 1; r >= 1; --r) free_.push_back(r);
  }

  // The row holding the node's state, or -1; a hit makes it the most recently used.
  int32_t find(int32_t node) {
    if (node == 0) return 0;
    auto it = map_.find(node);
    if (it == map_.end()) return -1;
    order_.splice(order_.begin(), order_, it->second.second);
    return it->second.first;
  }

  // Stores states[i] for nodes[i] not yet held; where fewer rows can be freed than there
  // are nodes, only the last ones (an LRU would have dropped the first ones anyway).
  void put(const std::vector<int32_t>& nodes, const States& states) {
    const int64_t evictable = static_cast<int64_t>(pinned_.size()) - 1 - pinned_count_;
    std::vector<int32_t> rows, sources;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i] == 0 || map_.count(nodes[i])) continue;
      if (static_cast<int64_t>(nodes.size() - i) > evictable) continue;
      const int32_t row = take_row();
      order_.push_front(nodes[i]);
      map_.emplace(nodes[i], std::make_pair(row, order_.begin()));
      rows.push_back(row);
      sources.push_back(static_cast<int32_t>(i));
    }
    if (rows.empty()) return;
    const bool all = rows.size() == static_cast<size_t>(states.size());
    rows_.assign(row_tensor(rows, device_), all ? states : states.index(row_tensor(sources, device_)));
  }

  void pin(int32_t row) { pinned_count_ += !pinned_[row], pinned_[row] = true; }
  void unpin_all() { std::fill(pinned_.begin(), pinned_.end(), false), pinned_count_ = 0; }
  States gather(const std::vector<int32_t>& rows) const { return rows_.index(row_tensor(rows, device_)); }

 private:
  int32_t take_row() {
    if (!free_.empty()) {
      const int32_t row = free_.back();
      free_.pop_back();
      return row;
    }
    auto victim = std::prev(order_.end());
    while (pinned_[map_.at(*victim).first]) --victim;  // put() leaves an unpinned one
    const int32_t row = map_.at(*victim).first;
    map_.erase(*victim);
    order_.erase(victim);
    return row;
  }

  States rows_;
  std::vector<bool> pinned_;
  int64_t pinned_count_ = 0;
  at::Device device_;
  std::vector<int32_t> free_;
  std::list<int32_t> order_;  // nodes held, most recently used first
  std::unordered_map<int32_t, std::pair<int32_t, std::list<int32_t>::iterator>> map_;
};

double q_of(const Node& n) { return n.visits > 0 ? n.value_sum / n.visits : 0.0; }

// Sequential halving at the root (RootChoice::kHalving): which child the next simulation
// goes through, when the worse half leaves, and the answer.
class SequentialHalving {
 public:
  // `children`: the root's, most likely first; the first min(size, simulations) compete.
  SequentialHalving(std::vector<int32_t> children, int64_t simulations) : remaining_(std::move(children)) {
    remaining_.resize(std::min<size_t>(remaining_.size(), static_cast<size_t>(std::max<int64_t>(1, simulations))));
    const auto phases = static_cast<int64_t>(std::ceil(std::log2(static_cast<double>(remaining_.size()))));
    per_phase_ = std::max<int64_t>(1, simulations / std::max<int64_t>(1, phases));
    target_ = std::max<int64_t>(1, per_phase_ / static_cast<int64_t>(remaining_.size()));
  }

  // The remaining child with the fewest visits, pending ones counted (ties: the likelier).
  int32_t next(const std::vector<Node>& nodes) const {
    return *std::min_element(remaining_.begin(), remaining_.end(), [&](int32_t a, int32_t b) {
      return nodes[a].visits + nodes[a].pending < nodes[b].visits + nodes[b].pending;
    });
  }

  // Once every remaining child has the phase's visits, the better half stays.
  void after_backup(const std::vector<Node>& nodes) {
    const auto reached = [&](int32_t c) { return nodes[c].visits >= target_; };
    while (remaining_.size() > 1 && std::all_of(remaining_.begin(), remaining_.end(), reached)) {
      const auto s = scores(nodes);
      std::vector<size_t> order(remaining_.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
      std::vector<int32_t> kept;
      for (size_t i = 0; i < (remaining_.size() + 1) / 2; ++i) kept.push_back(remaining_[order[i]]);
      std::sort(kept.begin(), kept.end());  // back in prior order
      remaining_ = std::move(kept);
      target_ += std::max<int64_t>(1, per_phase_ / static_cast<int64_t>(remaining_.size()));
    }
  }

  // The best remaining child by score among the visited ones (ties: the likelier).
  int32_t best(const std::vector<Node>& nodes) const {
    const auto s = scores(nodes);
    int32_t best = -1;
    double best_score = -INFINITY;
    for (size_t i = 0; i < remaining_.size(); ++i)
      if (nodes[remaining_[i]].visits > 0 && s[i] > best_score) best_score = s[i], best = remaining_[i];
    return best;
  }

 private:
  // log(prior) + (50 + most visits) * 0.1 * Q, Q rescaled to [0, 1] among the remaining.
  std::vector<double> scores(const std::vector<Node>& nodes) const {
    double lo = INFINITY, hi = -INFINITY;
    int32_t most = 0;
    for (int32_t c : remaining_) lo = std::min(lo, q_of(nodes[c])), hi = std::max(hi, q_of(nodes[c])), most = std::max(most, nodes[c].visits);
    std::vector<double> s;
    for (int32_t c : remaining_) {
      const double q = hi > lo ? (q_of(nodes[c]) - lo) / (hi - lo) : 0.0;
      s.push_back(std::log(std::max(static_cast<double>(nodes[c].prior), 1e-30)) + (50.0 + most) * 0.1 * q);
    }
    return s;
  }

  std::vector<int32_t> remaining_;
  int64_t per_phase_ = 0, target_ = 0;
};

// Rows the pool needs: the root, the parents of a batch, one replayed state; no more than
// the nodes a search can evaluate.
int64_t pool_capacity(const States& root, const SearchOptions& o) {
  const int64_t by_bytes = o.cache_bytes / std::max<int64_t>(1, root.bytes_per_state());
  return std::min(o.n_simulations + 1, std::max(by_bytes, o.leaf_batch + 2));
}

class Tree {
 public:
  Tree(LatentModel& model, const States& root, const SearchOptions& options, const Subtree* reuse)
      : model_(model), options_(options), pool_(root, pool_capacity(root, options)) {
    const auto eval = model_.evaluate(root);
    if (!reuse) {
      nodes_.emplace_back();
      expand({0}, eval);
    } else {
      adopt(*reuse, eval);
    }
    if (options_.root_choice == RootChoice::kHalving) {
      std::vector<int32_t> children;
      for (int32_t c = nodes_[0].first_child; c < nodes_[0].first_child + nodes_[0].num_children; ++c) children.push_back(c);
      halving_.emplace(std::move(children), options_.n_simulations);
    }
  }

  void run(SearchStats& stats) {
    const auto stopped = [&] { return stats.simulations > 0 && options_.stop_requested && options_.stop_requested(); };
    while (stats.simulations < options_.n_simulations && !stopped()) {
      const int64_t want = std::min(options_.leaf_batch, options_.n_simulations - stats.simulations);
      const auto leaves = select_leaves(want);
      const auto expansion = step_into(leaves, stats);
      expand(leaves, expansion);
      const auto values = expansion.values.to(torch::kCPU, torch::kDouble).contiguous();
      const int64_t layers = values.size(1);
      for (size_t i = 0; i < leaves.size(); ++i)
        backup(leaves[i], model::consensus_value(values.data_ptr<double>() + i * layers, layers));
      for (int32_t leaf : leaves) {
        stats.max_depth = std::max<int64_t>(stats.max_depth, nodes_[leaf].depth);
        depth_sum_ += nodes_[leaf].depth;
      }
      stats.simulations += static_cast<int64_t>(leaves.size());
      stats.network_calls += 1;
      if (halving_) halving_->after_backup(nodes_);
    }
    stats.nodes = static_cast<int64_t>(nodes_.size());
    stats.mean_depth = stats.simulations > 0 ? static_cast<double>(depth_sum_) / stats.simulations : 0;
  }

  SearchResult result(SearchStats& stats) {
    SearchResult r;
    const Node& root = nodes_[0];
    for (int32_t c = root.first_child; c < root.first_child + root.num_children; ++c) {
      const Node& child = nodes_[c];
      r.actions.push_back(child.action);
      r.visits.push_back(child.visits);
      stats.root.push_back({child.action, child.prior, child.visits, q_of(child)});
    }
    const int32_t best = chosen_child();
    r.action = nodes_[best].action;
    if (!nodes_[best].evaluated) throw std::logic_error("search: the chosen child was never evaluated");
    r.confidence = batch_values_[nodes_[best].batch][nodes_[best].row];
    r.target = pool_.gather({resident(best, stats)}).latents[0];
    pool_.unpin_all();
    const auto root_latents = pool_.gather({0}).latents[0];
    const auto delta = (r.target - root_latents).norm(2, -1).to(torch::kCPU, torch::kDouble).contiguous();
    stats.target_delta.assign(delta.data_ptr<double>(), delta.data_ptr<double>() + delta.numel());
    const auto conf = r.confidence.to(torch::kCPU, torch::kDouble).contiguous();
    stats.chosen_values.assign(conf.data_ptr<double>(), conf.data_ptr<double>() + conf.numel());
    if (options_.reuse_subtree) r.chosen_subtree = subtree_under(best);
    return r;
  }

 private:
  // A kept subtree as this tree, the new root evaluated as `eval`.
  void adopt(const Subtree& reuse, const Expansion& eval) {
    // The kept nodes keep their statistics and values; the root's values and its
    // children's priors are its own now (the kept ones were predicted from its parent).
    nodes_ = reuse.nodes;
    batch_values_ = {reuse.values, eval.values};
    nodes_[0].batch = 1;
    nodes_[0].row = 0;
    const auto probs = torch::softmax(eval.logits[0].to(torch::kFloat), -1).to(torch::kCPU).contiguous();
    for (int32_t c = nodes_[0].first_child; c < nodes_[0].first_child + nodes_[0].num_children; ++c)
      nodes_[c].prior = probs.data_ptr<float>()[nodes_[c].action];
    for (const Node& n : nodes_)
      if (n.visits > 0) q_min_ = std::min(q_min_, q_of(n)), q_max_ = std::max(q_max_, q_of(n));
  }

  // The nodes under `top`, renumbered breadth first (so each node's children stay
  // contiguous), depths from `top`, their values gathered into one batch.
  std::shared_ptr<const Subtree> subtree_under(int32_t top) const {
    auto sub = std::make_shared<Subtree>();
    std::vector<int32_t> order = {top}, parent = {-1};  // old numbers; new numbers of the parents
    std::vector<at::Tensor> values;
    for (size_t i = 0; i < order.size(); ++i) {
      Node n = nodes_[order[i]];
      n.depth -= nodes_[top].depth;
      n.parent = parent[i];
      if (n.evaluated) {
        values.push_back(batch_values_[n.batch][n.row]);
        n.batch = 0;
        n.row = static_cast<int32_t>(values.size() - 1);
      }
      if (n.num_children > 0) {
        const int32_t first = n.first_child;
        n.first_child = static_cast<int32_t>(order.size());
        for (int32_t c = first; c < first + n.num_children; ++c) order.push_back(c), parent.push_back(static_cast<int32_t>(i));
      }
      sub->nodes.push_back(n);
    }
    sub->values = torch::stack(values);
    return sub;
  }

  // The root's child the search answers with (SearchOptions::root_choice).
  int32_t chosen_child() const {
    if (halving_) return halving_->best(nodes_);
    const Node& root = nodes_[0];
    int32_t best = root.first_child;
    for (int32_t c = root.first_child + 1; c < root.first_child + root.num_children; ++c)
      if (better_choice(nodes_[c], nodes_[best])) best = c;
    return best;
  }

  // Whether `child` is a better answer than `best`, a child before it (so of no lower prior).
  bool better_choice(const Node& child, const Node& best) const {
    if (options_.root_choice == RootChoice::kVisits || child.visits == 0) return child.visits > best.visits;
    if (best.visits == 0) return true;
    return q_of(child) > q_of(best) || (q_of(child) == q_of(best) && child.visits > best.visits);
  }

  double puct(const Node& parent, const Node& child) const {
    const int32_t n = child.visits + child.pending;
    double q = n > 0 ? child.value_sum / n : 0.0;
    // Pending visits count as value 0, which may lie below the lowest Q seen.
    if (options_.normalize_q && q_max_ > q_min_) q = std::clamp((q - q_min_) / (q_max_ - q_min_), 0.0, 1.0);
    const double parent_n = std::max(1, parent.visits + parent.pending);
    return q + options_.c_puct * child.prior * std::sqrt(parent_n) / (1.0 + n);
  }

  int32_t select_child(int32_t node) const {
    if (node == 0 && halving_) return halving_->next(nodes_);
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

  // The pool row of an evaluated node's state, pinned; an evicted state is replayed from
  // its nearest held ancestor.
  int32_t resident(int32_t node, SearchStats& stats) {
    int32_t row = pool_.find(node);
    if (row < 0) {
      std::vector<int32_t> chain;  // node, its parent, ... up to (not including) a held one
      for (int32_t n = node; (row = pool_.find(n)) < 0; n = nodes_[n].parent) chain.push_back(n);
      States state = pool_.gather({row});
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        state = model_.step(state, {nodes_[*it].action}).states;
        stats.replayed += 1;
        pool_.put({*it}, state);
      }
      row = pool_.find(node);
    }
    pool_.pin(row);
    return row;
  }

  // One batched step from each leaf's parent along the leaf's action.
  Expansion step_into(const std::vector<int32_t>& leaves, SearchStats& stats) {
    std::vector<int32_t> rows;
    std::vector<int64_t> actions;
    for (int32_t leaf : leaves) {
      rows.push_back(resident(nodes_[leaf].parent, stats));
      actions.push_back(nodes_[leaf].action);
    }
    const auto parents = pool_.gather(rows);
    pool_.unpin_all();
    return model_.step(parents, actions);
  }

  // Gives each node its top_k children by policy; caches the nodes' states.
  void expand(const std::vector<int32_t>& at, const Expansion& e) {
    const int64_t k = std::min<int64_t>(options_.top_k, e.logits.size(-1));
    const auto probs = torch::softmax(e.logits.to(torch::kFloat), -1);
    const auto [prior, action] = probs.topk(k, -1);  // sorted, most likely first
    const auto p = prior.to(torch::kCPU).contiguous();
    const auto a = action.to(torch::kCPU).contiguous();
    const auto batch = static_cast<int32_t>(batch_values_.size());
    batch_values_.push_back(e.values);
    for (size_t i = 0; i < at.size(); ++i) {
      const int32_t n = at[i];
      nodes_[n].evaluated = true;
      nodes_[n].first_child = static_cast<int32_t>(nodes_.size());
      nodes_[n].num_children = static_cast<int32_t>(k);
      nodes_[n].batch = batch;
      nodes_[n].row = static_cast<int32_t>(i);
      for (int64_t j = 0; j < k; ++j) {
        Node child;
        child.parent = n;
        child.depth = nodes_[n].depth + 1;
        child.action = a.data_ptr<int64_t>()[i * k + j];
        child.prior = p.data_ptr<float>()[i * k + j];
        nodes_.push_back(child);
      }
    }
    pool_.put(at, e.states);
  }

  void backup(int32_t leaf, double value) {
    for (int32_t n = leaf; n >= 0; n = nodes_[n].parent) {
      nodes_[n].pending -= 1;
      nodes_[n].visits += 1;
      nodes_[n].value_sum += value;
      q_min_ = std::min(q_min_, q_of(nodes_[n]));
      q_max_ = std::max(q_max_, q_of(nodes_[n]));
    }
  }

  LatentModel& model_;
  const SearchOptions& options_;
  StatePool pool_;
  std::vector<Node> nodes_;
  std::vector<at::Tensor> batch_values_;  // per network call: the per-layer values [n, L]
  int64_t depth_sum_ = 0;
  double q_min_ = INFINITY, q_max_ = -INFINITY;  // over the backed-up nodes' Q
  std::optional<SequentialHalving> halving_;     // RootChoice::kHalving
};

}  // namespace

double tree_bytes_needed(const SearchOptions& o, int64_t num_layers) {
  // A node, and its place in a vector that may be growing (twice while it reallocates).
  const double node = 2.0 * sizeof(Node);
  const double evaluations = static_cast<double>(o.n_simulations) + 1;
  return evaluations * (static_cast<double>(o.top_k) * node + static_cast<double>(num_layers) * sizeof(float));
}

bool tree_fits(const SearchOptions& o, int64_t num_layers) {
  const double nodes = (static_cast<double>(o.n_simulations) + 1) * static_cast<double>(o.top_k) + 1;
  return tree_bytes_needed(o, num_layers) <= static_cast<double>(o.tree_bytes) &&
         nodes <= static_cast<double>(std::numeric_limits<int32_t>::max());
}

SearchResult run_search(LatentModel& model, const States& root, const SearchOptions& options, const Subtree* reuse) {
  if (root.size() != 1) throw std::invalid_argument("search: the root must be one state");
  if (!tree_fits(options, root.latents.size(1)))
    throw std::invalid_argument("search: a tree of n_simulations x top_k nodes would not fit tree_bytes");
  if (model.needs_caches() && root.caches.empty())
    throw std::invalid_argument("search: exact transitions need the root's layer caches");
  if (options.n_simulations < 1 || options.top_k < 1 || options.leaf_batch < 1)
    throw std::invalid_argument("search: n_simulations, top_k and leaf_batch must be at least 1");
  const auto start = std::chrono::steady_clock::now();
  c10::InferenceMode inference;  // no autograd bookkeeping: a third less per small op
  SearchStats stats;
  // A kept subtree that could outgrow the tree's bounds with this search's nodes is dropped.
  if (reuse) {
    const double kept = static_cast<double>(reuse->nodes.size());
    const double nodes = (static_cast<double>(options.n_simulations) + 1) * static_cast<double>(options.top_k) + 1 + kept;
    if (tree_bytes_needed(options, root.latents.size(1)) + kept * 2.0 * sizeof(Node) > static_cast<double>(options.tree_bytes) ||
        nodes > static_cast<double>(std::numeric_limits<int32_t>::max()))
      reuse = nullptr;
  }
  stats.reused_nodes = reuse ? static_cast<int64_t>(reuse->nodes.size()) : 0;
  // Latents alone where the model steps without caches: states then join alike.
  Tree tree(model, model.needs_caches() ? root : States{root.latents, {}}, options, reuse);
  tree.run(stats);
  auto result = tree.result(stats);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.stats = std::move(stats);
  return result;
}

}  // namespace crsm::search
