#pragma once

// What `generate --deliberate` and `eval` share: the search's flags, the search options
// they make, and the planner a checkpoint provides.

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "cli/options.h"
#include "model/backbone.h"
#include "search/latent_model.h"
#include "search/mcts.h"

namespace crsm::cli {

// A command's own options followed by the search's: --simulations, --c-puct,
// --search-top-k, --leaf-batch, --injection-rate, --state-cache-mb, --tree-mb.
std::vector<Option> with_search_flags(std::vector<Option> own);

// The config's search keys (after apply_to), --state-cache-mb and --tree-mb; a search
// stops early on a preemption signal. UsageError naming --simulations, --search-top-k and
// --tree-mb when one search's tree could outgrow --tree-mb.
search::SearchOptions search_options(const ParsedOptions& o, const RunConfig& config);

struct Planner {
  std::shared_ptr<search::LatentModel> model;
  std::string name;  // "dynamics" or "exact"
};

// The checkpoint's dynamics model on `device`, or exact backbone steps when `exact` or
// when the checkpoint has none.
Planner make_planner(const std::string& checkpoint, model::Backbone backbone, const torch::Device& device, bool exact);

}  // namespace crsm::cli
