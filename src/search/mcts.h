#pragma once

// Monte Carlo tree search over latent states (SPEC §9).
//
// Selection by PUCT, Q + c_puct * P * sqrt(N_parent) / (1 + N_child), visiting unvisited
// children first (the most likely first); with normalize_q, Q is rescaled to [0, 1] by the
// lowest and highest Q of any node of the tree so far (MuZero's), so that values that
// differ by hundredths are not drowned by the prior term; a leaf is expanded into the top_k actions of its
// policy and valued by the consensus of its per-layer values (SPEC §3); values are backed
// up unchanged (one agent: no sign flips). One iteration selects up to leaf_batch leaves,
// each path holding a virtual loss (a pending visit of value 0) so that the next path
// turns elsewhere, then makes one batched network call for all of them; leaf_batch 1 is
// plain sequential MCTS. A path that ends on a leaf already taken ends the batch early.
//
// Children store only their action and prior. Node states live in the rows of one
// preallocated batch (a batch of parents is one gather, a batch of leaves one scatter),
// bounded by cache_bytes: cache_bytes / bytes per state rows, but at least leaf_batch + 2
// (the root, the parents of one batch and one replayed state) and at most the
// n_simulations + 1 a search can evaluate. The tree's nodes are bounded too: a search whose
// n_simulations x top_k nodes could outgrow tree_bytes is refused. The root is always kept, the others least
// recently used out first; an evicted state is rebuilt by replaying the transitions from
// its nearest kept ancestor, one step at a time.
//
// Subtree reuse: a search returns the subtree under the child it chose (its nodes'
// statistics and values, not their states). Given to the next search, whose root is the
// state that child stands for, that subtree becomes its tree: the visits already spent
// below the chosen token count, the new root is evaluated afresh (its values, and its
// children's priors), and every kept state is replayed from the new root when a selection
// passes through it. Where the new root is not exactly the state the kept nodes were
// searched from (a plan injected into it; the dynamics' prediction of it) their
// statistics are an approximation, as in MuZero's reuse. A kept subtree that, with this
// search's nodes, could outgrow tree_bytes is dropped.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "config/run_config.h"
#include "search/latent_model.h"

namespace crsm::search {

// How the search's answer is chosen among the root's children: the most visited (ties:
// the higher prior), or the highest mean value Q among the visited ones (ties: the more
// visited, then the higher prior). Visits follow PUCT, which spends them on priors as
// much as on values; Q is what the values said. Or by sequential halving at the root
// (Gumbel MuZero's, without the noise, so deterministic): the min(top_k, n_simulations)
// most likely children share the simulations in ceil(log2 m) phases, each remaining child
// getting equal visits in a phase, after which the better half stays by
// log(prior) + sigma(Q), sigma(q) = (50 + the most visits of a child) * 0.1 * q with Q
// rescaled to [0, 1] among them; the answer is the best remaining child by that score.
// Below the root, PUCT selects either way.
enum class RootChoice { kVisits, kValue, kHalving };

struct SearchOptions {
  double c_puct = 1.0;
  RootChoice root_choice = RootChoice::kVisits;
  bool normalize_q = false;
  // Whether a search returns its chosen subtree (SearchResult::chosen_subtree); the
  // deliberation loop then hands it to the next token's search.
  bool reuse_subtree = false;
  int64_t n_simulations = 50;   // leaf evaluations per search (the root's is extra)
  int64_t top_k = 16;           // children per expanded node
  int64_t leaf_batch = 16;      // leaves per network call
  int64_t cache_bytes = int64_t{128} << 20;
  // The tree itself: a search of more nodes than fit is refused before it starts.
  int64_t tree_bytes = int64_t{1} << 30;
  // Asked after every network call but the first: true ends the search there, with the
  // best child found so far (a preemption signal ends a long search early).
  std::function<bool()> stop_requested;

  static SearchOptions from(const SearchConfig& config);
};

// The most memory the tree of one search can take, nodes and their values: every one of
// the n_simulations + 1 evaluations adds top_k children (num_layers: the values per node).
double tree_bytes_needed(const SearchOptions& options, int64_t num_layers);
// Whether such a tree fits options.tree_bytes and the tree's 32-bit node indices.
bool tree_fits(const SearchOptions& options, int64_t num_layers);

// One child of the root as the search left it.
struct RootChild {
  int64_t action = -1;
  double prior = 0;
  int64_t visits = 0;
  double q = 0;  // its mean backed-up value (0 unvisited)
};

struct SearchStats {
  int64_t simulations = 0;
  int64_t reused_nodes = 0;   // carried over from the previous search's chosen subtree
  int64_t network_calls = 0;  // batched steps that evaluated leaves
  int64_t replayed = 0;       // transitions recomputed for evicted states
  int64_t nodes = 0;          // nodes in the tree, expanded or not
  int64_t max_depth = 0;
  double mean_depth = 0;      // of the evaluated leaves; the root's children are at depth 1
  double seconds = 0;
  std::vector<double> target_delta;  // ||target_l - h_l|| per layer
  std::vector<double> chosen_values; // the per-layer values predicted at the chosen child
  std::vector<RootChild> root;       // the root's children, by prior, most likely first

};

// The nodes under a search's chosen child, for the next search (opaque).
struct Subtree;

struct SearchResult {
  int64_t action = -1;               // the chosen child's (SearchOptions::root_choice)
  std::vector<int64_t> actions;      // the root's children, by prior, most likely first
  std::vector<int64_t> visits;       // and their visit counts
  at::Tensor confidence;             // [L]: the chosen child's per-layer values
  at::Tensor target;                 // [L, D]: the chosen child's latents
  SearchStats stats;
  std::shared_ptr<const Subtree> chosen_subtree;  // for run_search's `reuse`
};

// root: one state (batch 1), with caches when the model needs them. The model's
// networks should be in eval mode and gradients off. `reuse`: the previous search's
// chosen_subtree, when `root` is the state its chosen child stands for.
SearchResult run_search(LatentModel& model, const States& root, const SearchOptions& options,
                        const Subtree* reuse = nullptr);

}  // namespace crsm::search
