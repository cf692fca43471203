#pragma once

// The planning evaluation across ranks (SPEC §9): the items are dealt out over the ranks
// (item i to rank i mod W); each rank decodes each of its items in every mode, and rank 0
// gathers the per-item results, in item order, into one report. Decoding is deterministic
// (greedy, or a synchronous search), so the report does not depend on W, except for the
// timings, which it keeps apart under "timing".

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "eval/eval_items.h"
#include "model/backbone.h"
#include "search/latent_model.h"
#include "search/mcts.h"

namespace crsm::eval {

// How a mode decodes, chosen once: whether a search chooses every token, and whether
// its plan is injected into the step (sync deliberation, lag 0).
struct EvalMode {
  std::string name;
  bool search = false;
  bool inject = false;
};
// "greedy,mcts": the modes, in that order; std::invalid_argument for anything else.
std::vector<EvalMode> eval_modes(const std::string& comma_list);
// "" for a good list, else what is wrong with it (an unknown mode, one given twice).
std::string mode_list_problem(const std::string& comma_list);
constexpr const char* kModeListDescription = "a comma-separated list of greedy, mcts, mcts+inject";

struct EvalSetup {
  model::Backbone backbone{nullptr};
  std::shared_ptr<search::LatentModel> planner;  // for the search modes (null without one)
  const data::Tokenizer* tokenizer = nullptr;
  search::SearchOptions search;
  double injection_rate = 0.1, delta_decay = 0.9;
  std::vector<EvalMode> modes;
  int64_t max_prompt_tokens = 4096;  // longer prompts are skipped (and counted)
  int64_t max_new_tokens = 0;        // 0: twice the answer's tokens plus 8
  nlohmann::json describe = nlohmann::json::object();  // copied into the report as "setup"
  // Asked before every token: true stops this rank's decoding there (a preemption signal).
  std::function<bool()> stop_requested;
};

// Every rank calls it; rank 0 gets the report, the others null. When a preemption signal
// reached any rank, every rank throws Preempted once the decoding has stopped, before
// anything is gathered.
nlohmann::json run_planning_eval(const EvalSetup& setup, const std::vector<EvalItem>& items, dist::Communicator& comm);

// JSON text of a report or part of one; answers that are not UTF-8 keep U+FFFD in place
// of their bad bytes.
std::string dump_text(const nlohmann::json& j, int indent = -1);

// The report as tables: accuracy per mode with intervals, by family and by file, search
// statistics, calibration, and one sample.
std::string format_eval_report(const nlohmann::json& report);

}  // namespace crsm::eval
