#include "eval/planning_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <stdexcept>

#include "base/error.h"
#include "base/packed.h"
#include "eval/decoding.h"
#include "eval/item_result.h"
#include "search/deliberation.h"

namespace crsm::eval {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The widest beam that costs no more than `budget` samples: width^2 <= budget.
int64_t beam_width(int64_t budget) {
  int64_t w = 1;
  while ((w + 1) * (w + 1) <= budget) ++w;
  return w;
}

// This rank's items, each decoded in every mode. The sampling modes share one set of
// samples per item: as many as the mode that asks for the most.
std::vector<ItemResult> decode_share(const EvalSetup& setup, const std::vector<EvalItem>& items, int rank, int world) {
  std::vector<std::unique_ptr<search::Deliberator>> decoders;
  int64_t most_samples = 0;
  for (const auto& mode : setup.modes) {
    decoders.push_back(mode.pick == Pick::kDecode ? make_decoder(setup, mode) : nullptr);
    most_samples = std::max(most_samples, mode.samples);
  }
  std::vector<ItemResult> results;
  for (size_t i = rank; i < items.size(); i += world) {
    if (setup.stop_requested && setup.stop_requested()) break;
    const auto& item = items[i];
    std::vector<int64_t> prompt;
    for (int32_t t : setup.tokenizer->encode(item.prompt)) prompt.push_back(t);
    ItemResult r{static_cast<int64_t>(i), rank, static_cast<int64_t>(prompt.size())};
    r.skipped = prompt.empty() || r.prompt_tokens > setup.max_prompt_tokens;
    if (!r.skipped) {
      const auto answer = setup.tokenizer->encode(item.answer);
      const int64_t max_new = setup.max_new_tokens > 0 ? setup.max_new_tokens : 2 * static_cast<int64_t>(answer.size()) + 8;
      const auto samples = most_samples > 0 ? sample_answers(setup, item, r.index, prompt, max_new, most_samples)
                                            : SampledAnswers{};
      for (size_t m = 0; m < setup.modes.size(); ++m) {
        const EvalMode& mode = setup.modes[m];
        r.modes.push_back(decoders[m]   ? decode_item(*decoders[m], setup, item, prompt, answer, max_new)
                          : mode.beam() ? beam_item(setup, item, mode, prompt, max_new)
                                        : pick_answer(mode, samples));
      }
    }
    results.push_back(std::move(r));
  }
  return results;
}

// Every rank's results, on rank 0 in item order (empty elsewhere).
std::vector<ItemResult> gather_results(dist::Communicator& comm, const std::vector<ItemResult>& mine, size_t n_items) {
  base::Packer packer;
  packer(mine);
  const auto parts = dist::all_gather_strings(comm, packer.bytes());
  std::vector<ItemResult> results(comm.rank() == 0 ? n_items : 0);
  if (comm.rank() != 0) return results;
  for (const auto& part : parts) {
    std::vector<ItemResult> theirs;
    base::Unpacker unpacker(part);
    unpacker(theirs);
    unpacker.finish();
    for (auto& r : theirs) results.at(static_cast<size_t>(r.index)) = std::move(r);
  }
  return results;
}

json rate(int64_t k, int64_t n) {
  const auto [lo, hi] = wilson_interval(k, n);
  return {{"solved", k}, {"tasks", n}, {"accuracy", n ? static_cast<double>(k) / n : 0.0}, {"ci95", {lo, hi}}};
}

std::vector<double> divided(std::vector<double> v, double by) {
  for (double& x : v) x = by > 0 ? x / by : 0.0;
  return v;
}

// The tasks of the items, in first-seen order: a task is named by its file and id and
// counts once, solved when every test output of it is exact, skipped when any is.
struct Tasks {
  std::vector<const EvalItem*> first;  // an item of each task, for its file and family
  std::vector<size_t> of_item;         // item -> its task
};

Tasks tasks_of(const std::vector<EvalItem>& items) {
  Tasks t;
  std::map<std::pair<std::string, std::string>, size_t> index;
  for (const auto& item : items) {
    const auto [at, fresh] = index.emplace(std::make_pair(item.file, item.task), t.first.size());
    if (fresh) t.first.push_back(&item);
    t.of_item.push_back(at->second);
  }
  return t;
}

enum class TaskOutcome : int8_t { kSolved, kFailed, kSkipped };

// Mode `m`'s outcome on every task.
std::vector<TaskOutcome> task_outcomes(size_t m, const Tasks& tasks, const std::vector<ItemResult>& results) {
  std::vector<TaskOutcome> out(tasks.first.size(), TaskOutcome::kSolved);
  for (size_t i = 0; i < results.size(); ++i) {
    TaskOutcome& t = out[tasks.of_item[i]];
    if (results[i].skipped) t = TaskOutcome::kSkipped;
    else if (t == TaskOutcome::kSolved && !results[i].modes.at(m).score.exact) t = TaskOutcome::kFailed;
  }
  return out;
}

// How sampled answers' values tell right from wrong: AUC (null where every answer is
// right or every one wrong) and ECE.
json outcome_calibration(const std::vector<Prediction>& outcomes) {
  int64_t right = 0;
  double values = 0;
  for (const auto& p : outcomes) right += p.correct, values += p.probability;
  const double auc = roc_auc(outcomes);
  return {{"answers", outcomes.size()},
          {"right", right},
          {"mean_value", outcomes.empty() ? 0.0 : values / static_cast<double>(outcomes.size())},
          {"auc", std::isfinite(auc) ? json(auc) : json()},
          {"ece", expected_calibration_error(outcomes)}};
}

// Mode `m`'s figures over the items, in item order.
json mode_report(size_t m, const Tasks& tasks, const std::vector<ItemResult>& results, int world) {
  int64_t cells_right = 0, cells = 0, items_exact = 0, evaluated_items = 0;
  search::DeliberationStats search;
  Compute compute;
  std::vector<double> rank_seconds(world, 0.0);
  std::vector<Prediction> predictions, outcomes;  // per token while right; per sampled answer
  std::map<std::string, std::vector<Prediction>> family_outcomes;
  for (const auto& r : results) {
    if (r.skipped) continue;
    const ModeOutcome& o = r.modes.at(m);
    auto& family = family_outcomes[tasks.first[tasks.of_item[static_cast<size_t>(r.index)]]->family];
    family.insert(family.end(), o.outcomes.begin(), o.outcomes.end());
    evaluated_items += 1;
    items_exact += o.score.exact ? 1 : 0;
    cells_right += o.score.cells_right;
    cells += o.score.cells;
    predictions.insert(predictions.end(), o.calibration.begin(), o.calibration.end());
    outcomes.insert(outcomes.end(), o.outcomes.begin(), o.outcomes.end());
    search.add(o.stats);
    compute += o.compute;
    rank_seconds.at(static_cast<size_t>(r.rank)) += o.seconds;
  }
  int64_t solved = 0, evaluated = 0, skipped = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> by_family, by_file;  // solved, evaluated
  const auto per_task = task_outcomes(m, tasks, results);
  for (size_t t = 0; t < per_task.size(); ++t) {
    if (per_task[t] == TaskOutcome::kSkipped) {
      skipped += 1;
      continue;
    }
    const bool right = per_task[t] == TaskOutcome::kSolved;
    evaluated += 1;
    solved += right;
    auto& fam = by_family[tasks.first[t]->family];
    auto& file = by_file[tasks.first[t]->file];
    fam.first += right, fam.second += 1, file.first += right, file.second += 1;
  }
  json report = rate(solved, evaluated);
  report["skipped"] = skipped;
  report["items_exact"] = items_exact;
  report["cell_accuracy"] = cells ? static_cast<double>(cells_right) / cells : 0.0;
  report["by_family"] = json::object();
  report["by_file"] = json::object();
  for (const auto& [name, c] : by_family) report["by_family"][name] = rate(c.first, c.second);
  for (const auto& [name, c] : by_file) report["by_file"][name] = rate(c.first, c.second);
  int64_t right_tokens = 0;
  double value_sum = 0;
  for (const auto& p : predictions) right_tokens += p.correct, value_sum += p.probability;
  const double n = static_cast<double>(predictions.size());
  report["calibration"] = {{"tokens", predictions.size()},
                           {"token_accuracy", n ? right_tokens / n : 0.0},
                           {"mean_value", n ? value_sum / n : 0.0},
                           {"ece", expected_calibration_error(predictions)}};
  if (!outcomes.empty()) {
    report["outcome_calibration"] = outcome_calibration(outcomes);
    report["outcome_calibration"]["by_family"] = json::object();
    for (const auto& [family, predictions] : family_outcomes)
      if (!predictions.empty()) report["outcome_calibration"]["by_family"][family] = outcome_calibration(predictions);
  }
  const auto searches = static_cast<double>(search.searches);
  report["search"] = {{"searches", search.searches},
                      {"simulations", search.simulations},
                      {"max_depth", search.max_depth},
                      {"mean_depth", search.simulations ? search.depth_sum / search.simulations : 0.0},
                      {"mean_nodes", searches ? static_cast<double>(search.nodes) / searches : 0.0},
                      {"mean_reused_nodes", searches ? static_cast<double>(search.reused_nodes) / searches : 0.0},
                      {"replayed", search.replayed},
                      {"mean_target_delta", divided(search.target_delta, searches)},
                      {"injections", search.injections},
                      {"mean_injected_delta", divided(search.injected_norm, static_cast<double>(search.injections))}};
  const double per_item = evaluated_items ? 1.0 / static_cast<double>(evaluated_items) : 0.0;
  report["compute"] = {{"prompt_steps", compute.prompt_steps},
                       {"answer_steps", compute.answer_steps},
                       {"dynamics_steps", compute.dynamics_steps},
                       {"value_evals", compute.value_evals},
                       {"decoding_steps_per_item", static_cast<double>(compute.decoding_steps()) * per_item}};
  report["timing"] = {{"wall_seconds", *std::max_element(rank_seconds.begin(), rank_seconds.end())},
                      {"simulations_per_s", search.search_seconds > 0 ? search.simulations / search.search_seconds : 0.0}};
  return report;
}

// Mode `m` against mode `against` on the tasks both evaluated: tasks only m solved, only
// `against` solved, and the exact McNemar p-value of the difference.
json paired(size_t m, size_t against, const Tasks& tasks, const std::vector<ItemResult>& results,
            const std::vector<EvalMode>& modes) {
  const auto a = task_outcomes(m, tasks, results), b = task_outcomes(against, tasks, results);
  int64_t better = 0, worse = 0;
  for (size_t t = 0; t < a.size(); ++t) {
    if (a[t] == TaskOutcome::kSkipped || b[t] == TaskOutcome::kSkipped) continue;
    better += a[t] == TaskOutcome::kSolved && b[t] == TaskOutcome::kFailed;
    worse += a[t] == TaskOutcome::kFailed && b[t] == TaskOutcome::kSolved;
  }
  return {{"against", modes[against].name}, {"better", better}, {"worse", worse}, {"p", mcnemar_exact_p(better, worse)}};
}

// Every mode against greedy and against the best equal-budget baseline (the most accurate
// of the vote and log-probability modes), when the run has them.
void add_comparisons(json& report, const Tasks& tasks, const std::vector<ItemResult>& results,
                     const std::vector<EvalMode>& modes) {
  std::optional<size_t> greedy, baseline;
  int64_t baseline_solved = -1;
  for (size_t m = 0; m < modes.size(); ++m) {
    if (modes[m].pick == Pick::kDecode && !modes[m].search) greedy = m;
    const int64_t solved = report["modes"][modes[m].name]["solved"].get<int64_t>();
    if ((modes[m].pick == Pick::kVote || modes[m].pick == Pick::kLogprob) && solved > baseline_solved)
      baseline = m, baseline_solved = solved;
  }
  for (size_t m = 0; m < modes.size(); ++m) {
    json& mode = report["modes"][modes[m].name];
    mode["mcnemar"] = json::object();
    if (greedy && m != *greedy) mode["mcnemar"]["vs_greedy"] = paired(m, *greedy, tasks, results, modes);
    if (baseline && m != *baseline) mode["mcnemar"]["vs_baseline"] = paired(m, *baseline, tasks, results, modes);
    if (greedy) {
      const double base = report["modes"][modes[*greedy].name]["compute"]["decoding_steps_per_item"].get<double>();
      mode["compute"]["vs_greedy"] = base > 0 ? mode["compute"]["decoding_steps_per_item"].get<double>() / base : 0.0;
    }
  }
}

// A byte-level model can generate bytes that are not UTF-8: in a report they become U+FFFD.
std::string as_utf8(const std::string& text) {
  return json::parse(json(text).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

json item_entry(const EvalItem& item, const ItemResult& r, const std::vector<EvalMode>& modes) {
  json e = {{"task", item.task}, {"family", item.family}, {"file", item.file}, {"test", item.test_index},
            {"expected", item.answer}, {"prompt_tokens", r.prompt_tokens}, {"skipped", r.skipped}};
  for (size_t m = 0; m < r.modes.size(); ++m)
    e["answers"][modes[m].name] = {{"text", as_utf8(r.modes[m].text)}, {"exact", r.modes[m].score.exact}};
  return e;
}

}  // namespace

std::string dump_text(const json& j, int indent) {
  // A byte-level model can generate bytes that are not UTF-8: they become U+FFFD.
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::vector<EvalMode> eval_modes(const std::string& comma_list, int64_t samples) {
  struct Kind {
    const char* name;
    bool search, inject;
    Pick pick;
  };
  static const Kind kKinds[] = {
      {"greedy", false, false, Pick::kDecode},     {"mcts", true, false, Pick::kDecode},
      {"mcts+inject", true, true, Pick::kDecode},  {"sample", false, false, Pick::kFirstSample},
      {"vote", false, false, Pick::kVote},         {"logprob", false, false, Pick::kLogprob},
      {"value", false, false, Pick::kValue},       {"value-vote", false, false, Pick::kValueVote},
      {"pass", false, false, Pick::kOracle},       {"beam", true, false, Pick::kBeam},
      {"beam-row", true, false, Pick::kBeamBlock}};
  std::vector<EvalMode> modes;
  size_t start = 0;
  for (;;) {
    const size_t comma = comma_list.find(',', start);
    const std::string word = comma_list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t at = word.find('@');
    const std::string base = word.substr(0, at);
    const auto kind = std::find_if(std::begin(kKinds), std::end(kKinds), [&](const Kind& k) { return base == k.name; });
    if (kind == std::end(kKinds)) throw std::invalid_argument("unknown decoding mode '" + word + "'");
    EvalMode mode{base, kind->search, kind->inject, kind->pick, 0, 0};
    const bool sampling = kind->pick != Pick::kDecode && kind->pick != Pick::kFirstSample && !mode.beam();
    int64_t n = sampling ? samples : mode.beam() ? beam_width(samples) : 1;
    if (at != std::string::npos) {
      const std::string digits = word.substr(at + 1);
      if (!sampling && !mode.beam()) throw std::invalid_argument("decoding mode '" + base + "' takes no @N");
      if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos ||
          std::stoll(digits) < 1 || std::stoll(digits) > kMaxSamples)
        throw std::invalid_argument("decoding mode '" + word + "': N must be an integer from 1 to " +
                                    std::to_string(kMaxSamples));
      n = std::stoll(digits);
    }
    if (sampling || kind->pick == Pick::kFirstSample) mode.samples = n;
    if (mode.beam()) mode.width = n;
    if (sampling || mode.beam()) mode.name = base + "@" + std::to_string(n);
    for (const auto& m : modes)
      if (m.name == mode.name) throw std::invalid_argument("duplicate decoding mode '" + mode.name + "'");
    modes.push_back(mode);
    if (comma == std::string::npos) return modes;
    start = comma + 1;
  }
}

int64_t apply_budget(std::vector<EvalMode>& modes, int64_t budget) {
  for (auto& mode : modes) {
    if (mode.pick == Pick::kDecode || mode.pick == Pick::kFirstSample) continue;
    const std::string base = mode.name.substr(0, mode.name.find('@'));
    (mode.beam() ? mode.width : mode.samples) = mode.beam() ? beam_width(budget) : budget;
    mode.name = base + "@" + std::to_string(mode.beam() ? mode.width : mode.samples);
  }
  return std::max<int64_t>(1, budget - 1);
}

std::string mode_list_problem(const std::string& comma_list) {
  try {
    eval_modes(comma_list);
    return "";
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
}

json run_planning_eval(const EvalSetup& setup, const std::vector<EvalItem>& items, dist::Communicator& comm) {
  torch::NoGradGuard no_grad;
  const auto start = Clock::now();
  if (comm.rank() == 0) {
    std::printf("eval: decoding %zu test outputs in %zu mode%s on %d rank%s\n", items.size(), setup.modes.size(),
                setup.modes.size() == 1 ? "" : "s", comm.world_size(), comm.world_size() == 1 ? "" : "s");
    std::fflush(stdout);
  }
  const auto mine = decode_share(setup, items, comm.rank(), comm.world_size());
  dist::stop_if_preempted_on_any_rank(comm, "eval", "before its report was complete; nothing was written: rerun the command");
  const auto results = gather_results(comm, mine, items.size());
  if (comm.rank() != 0) return nullptr;
  json report = {{"setup", setup.describe}};
  report["items_total"] = items.size();
  const Tasks tasks = tasks_of(items);
  for (size_t m = 0; m < setup.modes.size(); ++m)
    report["modes"][setup.modes[m].name] = mode_report(m, tasks, results, comm.world_size());
  add_comparisons(report, tasks, results, setup.modes);
  for (size_t i = 0; i < items.size(); ++i) report["items"].push_back(item_entry(items[i], results[i], setup.modes));
  report["timing"] = {{"world_size", comm.world_size()}, {"wall_seconds", seconds_since(start)}};
  return report;
}

}  // namespace crsm::eval
