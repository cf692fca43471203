#include "eval/decoding.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>

#include "search/beam.h"

namespace crsm::eval {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double consensus_of(const at::Tensor& values) {
  const auto c = values.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return model::consensus_value(c.data_ptr<double>(), c.numel());
}

// Whether `token`, after the answer's `taken` tokens, is taken and whether it ends the
// answer: the end-of-sequence token stops it untaken; the token that ends the answer (a
// grid's blank line, a text's line end) is its last.
search::StepVerdict answer_verdict(const data::Tokenizer& tokenizer, AnswerKind kind,
                                   const std::vector<int32_t>& taken, int64_t token) {
  if (token == tokenizer.eos_id()) return search::StepVerdict::kStop;
  // The ending is in the last few tokens: decode those, not the whole answer each time.
  constexpr size_t kTail = 4;
  std::vector<int32_t> tail(taken.end() - static_cast<std::ptrdiff_t>(std::min(kTail - 1, taken.size())), taken.end());
  tail.push_back(static_cast<int32_t>(token));
  const std::string text = tokenizer.decode(tail);
  const bool ended = taken.size() + 1 > kTail ? text.size() >= 2 && answer_ended(kind, text.substr(text.size() - 2))
                                              : answer_ended(kind, text);
  return ended ? search::StepVerdict::kTakeAndStop : search::StepVerdict::kTake;
}

// An answer as it is generated, token by token.
class AnswerTracker {
 public:
  AnswerTracker(const EvalSetup& setup, const EvalItem& item) : tokenizer_(*setup.tokenizer), kind_(item.kind) {}

  search::StepVerdict take(int64_t token) {
    const auto verdict = answer_verdict(tokenizer_, kind_, out_, token);
    if (verdict != search::StepVerdict::kStop) out_.push_back(static_cast<int32_t>(token));
    return verdict;
  }
  size_t size() const { return out_.size(); }
  const std::vector<int32_t>& tokens() const { return out_; }
  std::string text() const { return tokenizer_.decode(out_); }

 private:
  const data::Tokenizer& tokenizer_;
  AnswerKind kind_;
  std::vector<int32_t> out_;
};

std::vector<int32_t> narrowed(const std::vector<int64_t>& tokens) { return {tokens.begin(), tokens.end()}; }

// The beam's view of answers: their ending as the tracker sees it, and a block that ends
// with a line (a grid row).
search::BeamRules beam_rules(const EvalSetup& setup, const EvalItem& item) {
  const data::Tokenizer* tokenizer = setup.tokenizer;
  const AnswerKind kind = item.kind;
  search::BeamRules rules;
  rules.verdict = [tokenizer, kind](const std::vector<int64_t>& taken, int64_t token) {
    return answer_verdict(*tokenizer, kind, narrowed(taken), token);
  };
  rules.ends_block = [tokenizer](const std::vector<int64_t>& taken) {
    return !taken.empty() && tokenizer->decode({static_cast<int32_t>(taken.back())}).find('\n') != std::string::npos;
  };
  return rules;
}

}  // namespace

std::unique_ptr<search::Deliberator> make_decoder(const EvalSetup& setup, const EvalMode& mode) {
  search::DeliberationOptions d;
  d.timing = search::PlanTiming::kSync;
  d.search = setup.search;
  d.injection_rate = mode.inject ? setup.injection_rate : 0.0;
  d.delta_decay = setup.delta_decay;
  d.sampling.temperature = 0;  // greedy wherever no plan chooses
  return std::make_unique<search::Deliberator>(setup.backbone, mode.search ? setup.planner : nullptr, d);
}

ModeOutcome decode_item(search::Deliberator& decoder, const EvalSetup& setup, const EvalItem& item,
                        const std::vector<int64_t>& prompt, const std::vector<int32_t>& answer, int64_t max_new) {
  const auto start = Clock::now();
  ModeOutcome outcome;
  AnswerTracker tracker(setup, item);
  std::vector<double> values;             // of the state each token was chosen from
  std::vector<Prediction> next_token;     // each value against its token, while the answer is right
  bool on_track = true;
  decoder.generate(prompt, max_new, /*seed=*/0, [&](const search::TokenStep& s) {
    if (setup.stop_requested && setup.stop_requested()) return search::StepVerdict::kStop;
    values.push_back(consensus_of(s.values));
    if (on_track) {
      const bool right = tracker.size() < answer.size() && s.token == answer[tracker.size()];
      next_token.push_back({values.back(), right});
      on_track = right;
    }
    return tracker.take(s.token);
  });
  outcome.text = tracker.text();
  outcome.score = score_answer(item, outcome.text);
  // The heads are judged against what they were trained to predict (SPEC §3).
  if (setup.value_target == model::ValueTarget::kOutcome)
    for (double v : values) outcome.calibration.push_back({v, outcome.score.exact});
  else
    outcome.calibration = std::move(next_token);
  outcome.stats = decoder.stats();
  // A search's transitions (one per simulation, and the replays of states it did not
  // hold) are backbone steps on exact states, dynamics steps otherwise; each simulation
  // evaluates the value heads at the leaf it reaches.
  const int64_t simulations = outcome.stats.simulations;
  const int64_t transitions = simulations + outcome.stats.replayed;
  outcome.compute.prompt_steps = static_cast<int64_t>(prompt.size());
  outcome.compute.answer_steps = outcome.stats.tokens + (setup.exact_planner ? transitions : 0);
  outcome.compute.dynamics_steps = setup.exact_planner ? 0 : transitions;
  outcome.compute.value_evals = simulations;
  outcome.seconds = seconds_since(start);
  return outcome;
}

ModeOutcome beam_item(const EvalSetup& setup, const EvalItem& item, const EvalMode& mode,
                      const std::vector<int64_t>& prompt, int64_t max_new) {
  const auto start = Clock::now();
  model::Backbone backbone = setup.backbone;  // a handle: the module is shared
  const auto device = backbone->parameters().front().device();
  model::ModelState prefilled;
  backbone->prefill(torch::tensor(prompt, torch::kLong).unsqueeze(0).to(device), prefilled);
  auto root = search::states_of(prefilled);
  if (!setup.planner->needs_caches()) root.caches.clear();
  search::BeamOptions options;
  options.width = mode.width;
  options.unit = mode.pick == Pick::kBeamBlock ? search::BeamUnit::kBlock : search::BeamUnit::kToken;
  options.max_tokens = max_new;
  options.stop_requested = setup.stop_requested;
  const auto found = search::beam_search(*setup.planner, root, options, beam_rules(setup, item));
  ModeOutcome outcome;
  outcome.text = setup.tokenizer->decode(narrowed(found.tokens));
  outcome.score = score_answer(item, outcome.text);
  outcome.stats.tokens = static_cast<int64_t>(found.tokens.size());
  outcome.compute.prompt_steps = static_cast<int64_t>(prompt.size());
  (setup.exact_planner ? outcome.compute.answer_steps : outcome.compute.dynamics_steps) = found.transitions;
  outcome.compute.value_evals = found.transitions + 1;  // every state reached, and the root
  outcome.seconds = seconds_since(start);
  return outcome;
}

SampledAnswers sample_answers(const EvalSetup& setup, const EvalItem& item, int64_t item_index,
                              const std::vector<int64_t>& prompt, int64_t max_new, int64_t n) {
  model::Backbone backbone = setup.backbone;  // a handle: the module is shared
  const auto device = backbone->parameters().front().device();
  const auto prefill_start = Clock::now();
  model::ModelState prefilled;
  const auto first = backbone->prefill(torch::tensor(prompt, torch::kLong).unsqueeze(0).to(device), prefilled);
  SampledAnswers sampled{static_cast<int64_t>(prompt.size()), seconds_since(prefill_start), {}};
  auto& answers = sampled.answers;
  for (int64_t j = 0; j < n; ++j) {
    const auto start = Clock::now();
    std::mt19937_64 rng((static_cast<uint64_t>(item_index) << 20) ^ static_cast<uint64_t>(j));
    AnswerTracker tracker(setup, item);
    SampledAnswer a;
    model::DecodingHooks hooks;
    hooks.choose = [&](const model::StepOutput& out, const model::ModelState&) {
      return model::sample_token(out.logits[0], setup.sampling, rng);
    };
    hooks.observe = [&](int64_t token, const model::StepOutput& out) {
      if (setup.stop_requested && setup.stop_requested()) return search::StepVerdict::kStop;
      a.logprob += torch::log_softmax(out.logits[0].to(torch::kDouble), 0)[token].item<double>();
      a.value = consensus_of(out.values[0]);
      return tracker.take(token);
    };
    hooks.step = [&](const at::Tensor& token, model::ModelState& state) { return backbone->step(token, state); };
    model::decode_from(first, prefilled, max_new, hooks, device);
    a.text = tracker.text();
    a.score = score_answer(item, a.text);
    a.tokens = tracker.tokens();
    a.seconds = seconds_since(start);
    answers.push_back(std::move(a));
  }
  return sampled;
}

ModeOutcome pick_answer(const EvalMode& mode, const SampledAnswers& sampled) {
  const auto& answers = sampled.answers;
  const size_t n = static_cast<size_t>(std::min<int64_t>(mode.samples, static_cast<int64_t>(answers.size())));
  // Each answer's score under the mode; the first of the highest wins.
  std::vector<double> score(n, 0.0);
  std::map<std::string, double> by_text;  // votes, or values, summed over equal answers
  for (size_t j = 0; j < n; ++j) by_text[answers[j].text] += mode.pick == Pick::kValueVote ? answers[j].value : 1.0;
  for (size_t j = 0; j < n; ++j) {
    const SampledAnswer& a = answers[j];
    switch (mode.pick) {
      case Pick::kVote:
      case Pick::kValueVote: score[j] = by_text[a.text]; break;
      case Pick::kLogprob: score[j] = a.logprob; break;
      case Pick::kValue: score[j] = a.value; break;
      case Pick::kOracle: score[j] = a.score.exact ? 1.0 : 0.0; break;
      case Pick::kFirstSample:
      case Pick::kDecode:
      case Pick::kBeam:
      case Pick::kBeamBlock: score[j] = j == 0 ? 1.0 : 0.0; break;
    }
  }
  const size_t best = static_cast<size_t>(std::max_element(score.begin(), score.end()) - score.begin());
  ModeOutcome outcome;
  outcome.text = answers[best].text;
  outcome.score = answers[best].score;
  // The prompt is consumed once; every sample's tokens are steps of their own.
  outcome.compute.prompt_steps = sampled.prompt_tokens;
  outcome.seconds = sampled.prompt_seconds;
  for (size_t j = 0; j < n; ++j) {
    outcome.outcomes.push_back({answers[j].value, answers[j].score.exact});
    outcome.compute.answer_steps += static_cast<int64_t>(answers[j].tokens.size());
    outcome.seconds += answers[j].seconds;
  }
  if (mode.pick == Pick::kValue || mode.pick == Pick::kValueVote) outcome.compute.value_evals = static_cast<int64_t>(n);
  return outcome;
}

}  // namespace crsm::eval
