#include "eval/planning_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "base/error.h"
#include "base/packed.h"
#include "eval/item_result.h"
#include "search/deliberation.h"

namespace crsm::eval {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<double> to_doubles(const at::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

std::unique_ptr<search::Deliberator> make_decoder(const EvalSetup& setup, const EvalMode& mode) {
  search::DeliberationOptions d;
  d.timing = search::PlanTiming::kSync;
  d.search = setup.search;
  d.injection_rate = mode.inject ? setup.injection_rate : 0.0;
  d.delta_decay = setup.delta_decay;
  d.sampling.temperature = 0;  // greedy wherever no plan chooses
  return std::make_unique<search::Deliberator>(setup.backbone, mode.search ? setup.planner : nullptr, d);
}

// One item in one mode: the answer, its score, and the calibration of its values.
ModeOutcome decode_item(search::Deliberator& decoder, const EvalSetup& setup, const EvalItem& item,
                        const std::vector<int64_t>& prompt, const std::vector<int32_t>& answer, int64_t max_new) {
  const auto start = Clock::now();
  ModeOutcome outcome;
  std::vector<int32_t> out;
  bool on_track = true;
  const int32_t eos = setup.tokenizer->eos_id();
  decoder.generate(prompt, max_new, /*seed=*/0, [&](const search::TokenStep& s) {
    if (setup.stop_requested && setup.stop_requested()) return search::StepVerdict::kStop;
    if (on_track) {
      const auto values = to_doubles(s.values);
      const bool right = out.size() < answer.size() && s.token == answer[out.size()];
      outcome.calibration.push_back({model::consensus_value(values.data(), static_cast<int64_t>(values.size())), right});
      on_track = right;
    }
    if (s.token == eos) return search::StepVerdict::kStop;
    out.push_back(static_cast<int32_t>(s.token));
    // The ending is in the last few tokens: decode those, not the whole answer each time.
    constexpr size_t kTail = 4;
    const std::vector<int32_t> tail(out.end() - static_cast<std::ptrdiff_t>(std::min(kTail, out.size())), out.end());
    const std::string tail_text = setup.tokenizer->decode(tail);
    const bool ended = out.size() > kTail ? tail_text.size() >= 2 && answer_ended(item.kind, tail_text.substr(tail_text.size() - 2))
                                          : answer_ended(item.kind, tail_text);
    return ended ? search::StepVerdict::kTakeAndStop : search::StepVerdict::kTake;
  });
  outcome.text = setup.tokenizer->decode(out);
  outcome.score = score_answer(item, outcome.text);
  outcome.stats = decoder.stats();
  outcome.seconds = seconds_since(start);
  return outcome;
}

// This rank's items, each decoded in every mode.
std::vector<ItemResult> decode_share(const EvalSetup& setup, const std::vector<EvalItem>& items, int rank, int world) {
  std::vector<std::unique_ptr<search::Deliberator>> decoders;
  for (const auto& mode : setup.modes) decoders.push_back(make_decoder(setup, mode));
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
      for (auto& decoder : decoders) r.modes.push_back(decode_item(*decoder, setup, item, prompt, answer, max_new));
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

// Mode `m`'s figures over the items, in item order.
json mode_report(size_t m, const std::vector<EvalItem>& items, const std::vector<ItemResult>& results, int world) {
  // A task counts once: solved when every test output of it is exact; skipped when any is.
  struct Task {
    std::string file, family;
    bool solved = true, skipped = false;
  };
  std::map<std::pair<std::string, std::string>, size_t> index;  // (file, id) -> position in tasks
  std::vector<Task> tasks;
  int64_t cells_right = 0, cells = 0, items_exact = 0;
  search::DeliberationStats search;
  std::vector<double> rank_seconds(world, 0.0);
  std::vector<Prediction> predictions;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto [at, fresh] = index.emplace(std::make_pair(items[i].file, items[i].task), tasks.size());
    if (fresh) tasks.push_back({items[i].file, items[i].family});
    Task& task = tasks[at->second];
    if (results[i].skipped) {
      task.skipped = true;
      continue;
    }
    const ModeOutcome& o = results[i].modes.at(m);
    task.solved = task.solved && o.score.exact;
    items_exact += o.score.exact ? 1 : 0;
    cells_right += o.score.cells_right;
    cells += o.score.cells;
    predictions.insert(predictions.end(), o.calibration.begin(), o.calibration.end());
    search.add(o.stats);
    rank_seconds.at(static_cast<size_t>(results[i].rank)) += o.seconds;
  }
  int64_t solved = 0, evaluated = 0, skipped = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> by_family, by_file;  // solved, evaluated
  for (const auto& task : tasks) {
    if (task.skipped) {
      skipped += 1;
      continue;
    }
    evaluated += 1;
    solved += task.solved;
    auto& fam = by_family[task.family];
    auto& file = by_file[task.file];
    fam.first += task.solved, fam.second += 1, file.first += task.solved, file.second += 1;
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
  const auto searches = static_cast<double>(search.searches);
  report["search"] = {{"searches", search.searches},
                      {"simulations", search.simulations},
                      {"max_depth", search.max_depth},
                      {"mean_depth", search.simulations ? search.depth_sum / search.simulations : 0.0},
                      {"mean_nodes", searches ? static_cast<double>(search.nodes) / searches : 0.0},
                      {"mean_target_delta", divided(search.target_delta, searches)},
                      {"injections", search.injections},
                      {"mean_injected_delta", divided(search.injected_norm, static_cast<double>(search.injections))}};
  report["timing"] = {{"wall_seconds", *std::max_element(rank_seconds.begin(), rank_seconds.end())},
                      {"simulations_per_s", search.search_seconds > 0 ? search.simulations / search.search_seconds : 0.0}};
  return report;
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

std::vector<EvalMode> eval_modes(const std::string& comma_list) {
  std::vector<EvalMode> modes;
  size_t start = 0;
  for (;;) {
    const size_t comma = comma_list.find(',', start);
    const std::string name = comma_list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (name == "greedy") modes.push_back({name, false, false});
    else if (name == "mcts") modes.push_back({name, true, false});
    else if (name == "mcts+inject") modes.push_back({name, true, true});
    else throw std::invalid_argument("unknown decoding mode '" + name + "'");
    for (size_t m = 0; m + 1 < modes.size(); ++m)
      if (modes[m].name == name) throw std::invalid_argument("duplicate decoding mode '" + name + "'");
    if (comma == std::string::npos) return modes;
    start = comma + 1;
  }
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
  for (size_t m = 0; m < setup.modes.size(); ++m)
    report["modes"][setup.modes[m].name] = mode_report(m, items, results, comm.world_size());
  for (size_t i = 0; i < items.size(); ++i) report["items"].push_back(item_entry(items[i], results[i], setup.modes));
  report["timing"] = {{"world_size", comm.world_size()}, {"wall_seconds", seconds_since(start)}};
  return report;
}

}  // namespace crsm::eval
