#include "cli/search_setup.h"

#include "base/error.h"
#include "dist/runtime.h"
#include "checkpoint/assembled_checkpoint.h"
#include "config/memory_plan.h"

namespace crsm::cli {

std::vector<Option> with_search_flags(std::vector<Option> own) {
  std::vector<Option> search = {
      Option::for_key("simulations", "n_simulations", "leaf evaluations per search"),
      Option::for_key("c-puct", "c_puct", "exploration weight of PUCT"),
      Option::for_key("normalize-q", "normalize_q",
                      "rescale PUCT's Q to [0, 1] by the lowest and highest Q in the tree (MuZero's): values then "
                      "weigh against the prior however close they are"),
      Option::for_key("reuse-subtree", "reuse_subtree",
                      "start each token's search from the subtree the previous token's search left under the token "
                      "it chose (synchronous plans)"),
      Option::for_key("root-choice", "root_choice",
                      "how a search picks its token among the root's children: the most visited, the highest mean value, or "
                      "sequential halving of the most likely ones by prior and value (Gumbel MuZero's, without noise)"),
      Option::for_key("search-top-k", "top_k", "children expanded per search node, by policy"),
      Option::for_key("leaf-batch", "leaf_batch", "leaves evaluated per batched network call (1: sequential MCTS)"),
      Option::for_key("injection-rate", "injection_rate", "alpha_l = injection_rate * sigmoid(conf_l) * delta_decay^lag"),
      Option("state-cache-mb", Constraint::integer(1, int64_t{1} << 30), "memory for cached search-node states, MiB").with_default("128"),
      Option("tree-mb", Constraint::integer(1, int64_t{1} << 30),
             "memory for one search's tree, MiB: a search of --simulations x --search-top-k nodes (about 128 bytes "
             "each) that could outgrow it is refused before it starts")
          .with_default("1024"),
  };
  own.insert(own.end(), search.begin(), search.end());
  return own;
}

search::SearchOptions search_options(const ParsedOptions& o, const RunConfig& config) {
  auto s = search::SearchOptions::from(config.search);
  s.cache_bytes = o.integer("state-cache-mb") << 20;
  s.tree_bytes = o.integer("tree-mb") << 20;
  s.stop_requested = dist::preemption_signalled;
  if (!search::tree_fits(s, config.model.num_layers))
    throw UsageError("--simulations " + std::to_string(s.n_simulations) + " with --search-top-k " +
                     std::to_string(s.top_k) + " can grow one search's tree to " +
                     format_bytes(search::tree_bytes_needed(s, config.model.num_layers)) + ", more than --tree-mb " +
                     std::to_string(o.integer("tree-mb")) + " allows (or than 2^31 nodes): lower --simulations or "
                     "--search-top-k, or raise --tree-mb");
  return s;
}

Planner make_planner(const std::string& checkpoint, model::Backbone backbone, const torch::Device& device, bool exact) {
  auto dynamics = exact ? std::nullopt : checkpoint::load_checkpoint_dynamics(checkpoint);
  if (!dynamics) return {std::make_shared<search::ExactModel>(backbone), "exact"};
  dynamics->model->to(device);
  dynamics->model->eval();
  return {std::make_shared<search::DynamicsModel>(backbone, dynamics->model), "dynamics"};
}

}  // namespace crsm::cli
