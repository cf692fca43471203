#include "distill/rollouts.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "checkpoint/sha256.h"
#include "data/data_error.h"
#include "dist/runtime.h"
#include "eval/decoding.h"
#include "eval/planning_eval.h"

namespace crsm::distill {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A digest of what the items ask: a collection continues only on the same tasks.
std::string items_digest(const std::vector<eval::EvalItem>& items) {
  checkpoint::Sha256 hash;
  for (const auto& item : items) {
    const std::string fields[] = {item.task, std::to_string(item.test_index), item.prompt, item.answer};
    for (const auto& f : fields) {
      const uint64_t size = f.size();
      hash.update(&size, sizeof size);
      hash.update(f.data(), f.size());
    }
  }
  return hash.hex_digest().substr(0, 16);
}

std::string plan_text(const std::vector<eval::EvalItem>& items, const RolloutOptions& o, int world) {
  std::ostringstream s;
  s << "items=" << items.size() << " digest=" << items_digest(items) << " samples=" << o.samples
    << " temperature=" << o.sampling.temperature << " top_k=" << o.sampling.top_k << " top_p=" << o.sampling.top_p
    << " max_prompt_tokens=" << o.max_prompt_tokens << " max_new_tokens=" << o.max_new_tokens << " world=" << world;
  return s.str();
}

std::string without_world(const std::string& plan) { return plan.substr(0, plan.rfind(" world=")); }

// "2 ranks": the number of ranks a plan records.
std::string ranks_of(const std::string& plan) {
  const std::string world = plan.substr(plan.rfind(" world=") + 7);
  return world + (world == "1" ? " rank" : " ranks");
}

}  // namespace

int64_t RolloutPlan::sampled_items() const {
  return std::count_if(max_new.begin(), max_new.end(), [](int64_t n) { return n > 0; });
}

int64_t RolloutPlan::rows_of(int64_t first, int64_t last) const {
  int64_t items = 0;
  for (int64_t i = first; i < last; ++i) items += max_new[i] > 0 ? 1 : 0;
  return items * schema.samples;
}

RolloutPlan plan_rollouts(const std::vector<eval::EvalItem>& items, const data::Tokenizer& tokenizer,
                          int64_t vocab_size, const std::string& model_sha256, const RolloutOptions& options, int world) {
  RolloutPlan plan;
  auto& s = plan.schema;
  for (const auto& item : items) {
    auto prompt = tokenizer.encode(item.prompt);
    const bool sampled = !prompt.empty() && static_cast<int64_t>(prompt.size()) <= options.max_prompt_tokens;
    const int64_t max_new = options.max_new_tokens > 0
                                ? options.max_new_tokens
                                : 2 * static_cast<int64_t>(tokenizer.encode(item.answer).size()) + 8;
    plan.max_new.push_back(sampled ? max_new : 0);
    if (sampled) {
      s.prompt_width = std::max(s.prompt_width, static_cast<int64_t>(prompt.size()));
      s.answer_width = std::max(s.answer_width, max_new);
      s.task_width = std::max(s.task_width, static_cast<int64_t>(item.task.size()));
    }
    plan.prompts.push_back(sampled ? std::move(prompt) : std::vector<int32_t>{});
  }
  s.samples = options.samples;
  s.vocab_size = vocab_size;
  s.model_sha256 = model_sha256;
  s.plan = plan_text(items, options, world);
  return plan;
}

std::string rollout_rank_file(const std::string& dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank%05d.h5", rank);
  return (fs::path(dir) / "rollouts" / name).string();
}

std::string rollout_master_file(const std::string& dir) { return (fs::path(dir) / "rollouts.h5").string(); }

void check_rollouts_resumable(const RolloutPlan& plan, const RolloutOptions& options, dist::Communicator& comm) {
  dist::run_on_root(comm, [&]() -> std::string {
    const auto expected = data::rollout_attributes(plan.schema);
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(fs::path(options.dir) / "rollouts", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.size() != 12 || name.rfind("rank", 0) != 0 || entry.path().extension() != ".h5") continue;
      const std::string path = entry.path().string();
      const std::string redo = "; or remove " + options.dir + " to sample anew";
      if (std::atoi(name.substr(4, 5).c_str()) >= comm.world_size())
        throw data::DataError(path + ": left by a collection of more ranks than this run's " +
                              std::to_string(comm.world_size()) + redo);
      const auto info = data::inspect_rollout_file(path);
      const std::string& was = info.schema.plan;
      if (was != plan.schema.plan && without_world(was) == without_world(plan.schema.plan))
        throw data::DataError(path + ": collected by " + ranks_of(was) + ", and rank r's file holds rank r's items: " +
                              "continue it with " + ranks_of(was) + " (this run has " + std::to_string(comm.world_size()) +
                              ")" + redo);
      data::check_same_attributes(data::rollout_format(), info.file, expected, "this collection",
                                  " (it was sampled from another model, other tasks or with other settings)" + redo);
    }
    return "";
  });
}

RolloutResult collect_rollouts(model::Backbone model, const data::Tokenizer& tokenizer,
                               const std::vector<eval::EvalItem>& items, const RolloutPlan& plan,
                               const RolloutOptions& options, dist::Communicator& comm) {
  torch::NoGradGuard no_grad;
  const int rank = comm.rank(), world = comm.world_size();
  const auto start = Clock::now();
  RolloutResult result;
  eval::EvalSetup setup;
  setup.backbone = model;
  setup.tokenizer = &tokenizer;
  setup.sampling = options.sampling;
  setup.stop_requested = dist::preemption_signalled;
  fs::create_directories(fs::path(options.dir) / "rollouts");
  const auto [first, last] = dist::rank_share(static_cast<int64_t>(items.size()), rank, world);
  const int64_t mine = plan.rows_of(first, last);
  bool stopped = false;
  {
    data::RolloutWriter writer(rollout_rank_file(options.dir, rank), plan.schema, options.writer);
    result.rows_resumed = writer.rows();
    if (writer.rows() > mine)
      throw data::DataError(rollout_rank_file(options.dir, rank) + " holds " + std::to_string(writer.rows()) +
                            " rows, more than the " + std::to_string(mine) + " of this rank's items");
    // Each item's rows are written together; go on from the item the kept rows end in.
    int64_t i = first;
    while (i < last && plan.rows_of(first, i + 1) <= writer.rows()) ++i;
    auto last_report = Clock::now();
    for (; i < last && !stopped; ++i) {
      if (plan.max_new[i] == 0) continue;
      const auto& item = items[i];
      const std::vector<int64_t> prompt(plan.prompts[i].begin(), plan.prompts[i].end());
      const auto sampled = eval::sample_answers(setup, item, i, prompt, plan.max_new[i], plan.schema.samples);
      stopped = dist::preemption_signalled();
      if (stopped) break;  // its answers may have been cut short: none of them is written
      std::vector<data::Rollout> rollouts;
      for (size_t j = 0; j < sampled.answers.size(); ++j) {
        const auto& a = sampled.answers[j];
        rollouts.push_back({item.task, static_cast<int32_t>(item.test_index), i, static_cast<int32_t>(j),
                            plan.prompts[i], a.tokens, a.logprob, static_cast<int32_t>(a.score.cells_right),
                            static_cast<int32_t>(a.score.cells), a.score.exact});
      }
      const int64_t kept = std::max<int64_t>(0, writer.rows() - plan.rows_of(first, i));
      rollouts.erase(rollouts.begin(), rollouts.begin() + std::min<int64_t>(kept, rollouts.size()));
      result.rows_written += static_cast<int64_t>(rollouts.size());
      writer.append(data::rollout_rows(rollouts, plan.schema));
      if (rank == 0 && (seconds_since(last_report) > 10 || i + 1 == last)) {
        std::printf("rollouts: rank 0 has %lld of its %lld rows (%.1f rows/s)\n", static_cast<long long>(writer.rows()),
                    static_cast<long long>(mine), result.rows_written / seconds_since(start));
        std::fflush(stdout);
        last_report = Clock::now();
      }
    }
    writer.close();
  }
  result.preempted = dist::all_reduce_scalar(comm, stopped ? 1.0 : 0.0, dist::ReduceOp::kMax) > 0;
  result.master = rollout_master_file(options.dir);
  if (!result.preempted && rank == 0) {
    std::vector<std::string> files;
    for (int r = 0; r < world; ++r) files.push_back(rollout_rank_file(options.dir, r));
    data::write_master_file(data::rollout_format(), result.master, files);
  }
  comm.barrier();
  result.seconds = seconds_since(start);
  return result;
}

RolloutSummary summarize_rollouts(const std::string& path) {
  const data::RolloutReader reader(path);
  RolloutSummary s;
  std::set<int64_t> items, solved;
  constexpr int64_t kPiece = 4096;
  for (int64_t at = 0; at < reader.rows(); at += kPiece) {
    const auto rows = reader.read(at, std::min(kPiece, reader.rows() - at));
    const auto item = rows.item.contiguous();
    const auto label = rows.label.contiguous();
    for (int64_t r = 0; r < rows.size(); ++r) {
      const int64_t i = item.data_ptr<int64_t>()[r];
      items.insert(i);
      if (label.data_ptr<uint8_t>()[r] != 0) {
        s.right += 1;
        solved.insert(i);
      }
    }
  }
  s.rows = reader.rows();
  s.items = static_cast<int64_t>(items.size());
  s.items_solved = static_cast<int64_t>(solved.size());
  return s;
}

}  // namespace crsm::distill
