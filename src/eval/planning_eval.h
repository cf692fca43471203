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
#include "model/generation.h"
#include "search/latent_model.h"
#include "search/mcts.h"

namespace crsm::eval {

// How a mode reaches its answer, chosen once (SPEC §9): one deterministic decoding (greedy,
// or a search choosing every token), or a choice among N answers sampled at the setup's
// temperature: the first one, the most frequent, the most likely, the one the value heads
// rate highest, the most frequent weighted by value, or any right one (the oracle pass@N,
// the ceiling no reranker can pass); or a beam scored by the value, per token or per block
// (a grid row), over the planner's transitions.
enum class Pick { kDecode, kFirstSample, kVote, kLogprob, kValue, kValueVote, kOracle, kBeam, kBeamBlock };

struct EvalMode {
  std::string name;  // as the report shows it: greedy, mcts, mcts+inject, sample, vote@16, ...
  bool search = false;
  bool inject = false;
  Pick pick = Pick::kDecode;
  int64_t samples = 0;  // N of a sampling mode
  int64_t width = 0;    // of a beam

  bool beam() const { return pick == Pick::kBeam || pick == Pick::kBeamBlock; }
};
// "greedy,vote@8,pass,beam@4": the modes, in that order; a sampling mode without @N
// takes `samples`, a beam without @W is sqrt(samples) wide. std::invalid_argument for
// anything else.
std::vector<EvalMode> eval_modes(const std::string& comma_list, int64_t samples = 16);
// "" for a good list, else what is wrong with it (an unknown mode, one given twice).
std::string mode_list_problem(const std::string& comma_list);
constexpr const char* kModeListDescription =
    "a comma-separated list of greedy, mcts, mcts+inject, sample, vote, logprob, value, value-vote, pass (these five "
    "with @N samples, else --samples), beam, beam-row (with @W, the beam's width, else the square root of --samples)";
constexpr int64_t kMaxSamples = 4096;

// Sets every mode to about `budget` times greedy's compute: N = budget for the sampling
// modes (each sample costs about one greedy decoding), a beam floor(sqrt(budget)) wide
// (width^2 transitions per token), and budget - 1 simulations per token for the
// searches (each a transition beside the token's own step; at least 1). Returns the
// simulations.
int64_t apply_budget(std::vector<EvalMode>& modes, int64_t budget);

struct EvalSetup {
  model::Backbone backbone{nullptr};
  // What its value heads predict: the calibration of a decoded answer's values is against
  // each token (next_token) or against whether the answer came out right (outcome).
  model::ValueTarget value_target = model::ValueTarget::kNextToken;
  std::shared_ptr<search::LatentModel> planner;  // for the search modes (null without one)
  bool exact_planner = false;  // the planner's transitions are backbone steps (else dynamics steps)
  model::SamplingOptions sampling;  // of the sampling modes
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
