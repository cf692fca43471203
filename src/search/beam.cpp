#include "search/beam.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "model/backbone.h"

namespace crsm::search {
namespace {

struct Hypothesis {
  std::vector<int64_t> tokens;
  double logprob = 0;  // of its tokens under the policy
  double value = 0;    // the consensus value of the state it reached
  bool finished = false;
  int64_t row = -1;  // its state's row in the round's batch, while live

  // A value of 0 would end every comparison: it counts as a millionth.
  double score() const { return logprob + std::log(std::max(value, 1e-6)); }
};

at::Tensor rows_tensor(const std::vector<int64_t>& rows, const at::Tensor& like) {
  return torch::tensor(rows, torch::kLong).to(like.device());
}

at::Tensor log_policy(const at::Tensor& logits) {
  return torch::log_softmax(logits.detach().to(torch::kCPU, torch::kDouble), 1).contiguous();
}

std::vector<double> consensus_rows(const at::Tensor& values) {
  const auto v = values.detach().to(torch::kCPU, torch::kDouble).contiguous();
  std::vector<double> out(static_cast<size_t>(v.size(0)));
  for (int64_t i = 0; i < v.size(0); ++i) out[i] = model::consensus_value(v[i].data_ptr<double>(), v.size(1));
  return out;
}

// The live children of one round: their states, policies and hypotheses, row i for
// children[i].
struct Round {
  States states;
  at::Tensor logits;
  std::vector<Hypothesis> children;
};

class BeamSearch {
 public:
  BeamSearch(LatentModel& model, const BeamOptions& options, const BeamRules& rules)
      : model_(model), options_(options), rules_(rules) {}

  BeamResult run(const States& root) {
    const auto first = model_.evaluate(root);
    Round live{first.states, first.logits, {Hypothesis{{}, 0.0, consensus_rows(first.values)[0], false, 0}}};
    std::vector<Hypothesis> kept = live.children;
    while (std::any_of(kept.begin(), kept.end(), [](const Hypothesis& h) { return !h.finished; })) {
      if (options_.stop_requested && options_.stop_requested()) break;
      std::vector<Hypothesis> finished;
      for (const auto& h : kept)
        if (h.finished) finished.push_back(h);
      auto next = grow(live, finished);
      if (!next) break;  // the round's first step would pass the budget
      result_.rounds += 1;
      live = std::move(*next);
      for (const auto& h : live.children)
        if (h.finished) finished.push_back(h);
      kept = best_of(finished, live);
      live.children.clear();
      for (const auto& h : kept)
        if (!h.finished) live.children.push_back(h);
    }
    const auto best = std::max_element(kept.begin(), kept.end(), [](const Hypothesis& a, const Hypothesis& b) {
      return a.score() < b.score();
    });
    result_.tokens = best->tokens;
    result_.logprob = best->logprob;
    result_.value = best->value;
    return result_;
  }

 private:
  // The round's children of every live hypothesis, each grown by one unit; those a stop
  // token ends at once go to `finished` without a step. Nothing when the budget cannot
  // pay for the round's first step.
  std::optional<Round> grow(const Round& live, std::vector<Hypothesis>& finished) {
    const int64_t k = std::min<int64_t>(options_.width, live.logits.size(1));
    const auto top = std::get<1>(live.logits.topk(k, 1)).to(torch::kCPU).contiguous();
    const auto logp = log_policy(live.logits);
    std::vector<int64_t> parents, actions;
    std::vector<Hypothesis> children;
    for (const auto& h : live.children) {
      for (int64_t j = 0; j < k; ++j) {
        const int64_t token = top[h.row][j].item<int64_t>();
        if (rules_.verdict(h.tokens, token) == model::StepVerdict::kStop) {
          finished.push_back({h.tokens, h.logprob + logp[h.row][token].item<double>(), h.value, true, -1});
          continue;
        }
        parents.push_back(h.row);
        actions.push_back(token);
        children.push_back({h.tokens, h.logprob + logp[h.row][token].item<double>(), 0.0, false,
                            static_cast<int64_t>(children.size())});
      }
    }
    if (children.empty()) return Round{live.states, live.logits, {}};
    if (!affords(actions.size())) return std::nullopt;
    auto reached = step(live.states.index(rows_tensor(parents, live.logits)), actions);
    Round round{std::move(reached.states), reached.logits, std::move(children)};
    take(round, actions, consensus_rows(reached.values));
    if (options_.unit == BeamUnit::kBlock) finish_blocks(round);
    return round;
  }

  // Appends actions[i] to children[i] with its reached state's value, and finishes the
  // children the token ended (their log-probability already counts the token).
  void take(Round& round, const std::vector<int64_t>& actions, const std::vector<double>& values,
            const std::vector<int64_t>& which = {}) {
    for (size_t i = 0; i < actions.size(); ++i) {
      Hypothesis& h = round.children[which.empty() ? i : static_cast<size_t>(which[i])];
      const bool ends = rules_.verdict(h.tokens, actions[i]) == model::StepVerdict::kTakeAndStop;
      h.tokens.push_back(actions[i]);
      h.value = values[i];
      h.finished = ends || static_cast<int64_t>(h.tokens.size()) >= options_.max_tokens;
    }
  }

  // Runs every child on greedily, all together, until a block or the answer ends (a stop
  // token ends it without a step).
  void finish_blocks(Round& round) {
    for (;;) {
      std::vector<int64_t> rows, actions;
      const auto logp = log_policy(round.logits);
      for (auto& h : round.children) {
        if (h.finished || rules_.ends_block(h.tokens)) continue;
        const int64_t token = round.logits[h.row].argmax().item<int64_t>();
        h.logprob += logp[h.row][token].item<double>();
        if (rules_.verdict(h.tokens, token) == model::StepVerdict::kStop) {
          h.finished = true;
          continue;
        }
        rows.push_back(h.row);
        actions.push_back(token);
      }
      if (rows.empty() || !affords(rows.size()) || (options_.stop_requested && options_.stop_requested())) {
        for (size_t i = 0; i < rows.size(); ++i)  // not taken after all
          round.children[rows[i]].logprob -= logp[rows[i]][actions[i]].item<double>();
        break;
      }
      const auto at = rows_tensor(rows, round.logits);
      auto reached = step(round.states.index(at), actions);
      round.states.assign(at, reached.states);
      round.logits.index_copy_(0, at, reached.logits);
      take(round, actions, consensus_rows(reached.values), rows);
    }
  }

  bool affords(size_t transitions) const {
    const int64_t cap = options_.max_transitions > 0 ? options_.max_transitions
                                                     : options_.width * options_.width * options_.max_tokens;
    return result_.transitions + static_cast<int64_t>(transitions) <= cap;
  }

  Expansion step(const States& states, const std::vector<int64_t>& actions) {
    result_.transitions += static_cast<int64_t>(actions.size());
    result_.network_calls += 1;
    return model_.step(states, actions);
  }

  // The `width` best of the finished hypotheses and the round's live children, in that
  // order on ties; the live ones keep their rows.
  std::vector<Hypothesis> best_of(const std::vector<Hypothesis>& finished, const Round& round) {
    std::vector<Hypothesis> all = finished;
    for (const auto& h : round.children)
      if (!h.finished) all.push_back(h);
    std::stable_sort(all.begin(), all.end(),
                     [](const Hypothesis& a, const Hypothesis& b) { return a.score() > b.score(); });
    all.resize(std::min<size_t>(all.size(), static_cast<size_t>(options_.width)));
    return all;
  }

  LatentModel& model_;
  const BeamOptions& options_;
  const BeamRules& rules_;
  BeamResult result_;
};

}  // namespace

BeamResult beam_search(LatentModel& model, const States& root, const BeamOptions& options, const BeamRules& rules) {
  if (root.size() != 1 || options.width < 1 || options.max_tokens < 1)
    throw std::invalid_argument("beam_search: a root of " + std::to_string(root.size()) + " states, width " +
                                std::to_string(options.width) + " and max_tokens " + std::to_string(options.max_tokens) +
                                "; expected one state and both at least 1");
  return BeamSearch(model, options, rules).run(root);
}

}  // namespace crsm::search
