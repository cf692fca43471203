#include "distill/distill_collect.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "data/batch_sampler.h"
#include "data/data_error.h"
#include "data/portable_random.h"
#include "dist/runtime.h"
#include "dist/communicator.h"

namespace crsm::distill {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int64_t CollectionPlan::rows_of(int64_t window) const {
  const int64_t before = window * seq_len;
  return std::min(seq_len, num_samples - before);
}

std::pair<int64_t, int64_t> CollectionPlan::windows_of_rank(int rank, int world) const {
  return dist::rank_share(windows(), rank, world);
}

int64_t CollectionPlan::rows_of_rank(int rank, int world) const {
  const auto [first, last] = windows_of_rank(rank, world);
  int64_t rows = 0;
  for (int64_t w = first; w < last; ++w) rows += rows_of(w);
  return rows;
}

std::string CollectionPlan::describe() const {
  return "split=" + split + " num_samples=" + std::to_string(num_samples) + " seq_len=" + std::to_string(seq_len) +
         " seed=" + std::to_string(seed) + " windows=" + std::to_string(windows()) +
         " first_start=" + std::to_string(starts.empty() ? -1 : starts.front());
}

std::string collection_plan_text(const CollectionPlan& plan, int world) {
  return plan.describe() + " world=" + std::to_string(world);
}

namespace {

// "2 ranks": the number of ranks a plan text records.
std::string ranks_of(const std::string& plan_text) {
  const auto at = plan_text.rfind(" world=");
  const std::string world = at == std::string::npos ? "?" : plan_text.substr(at + 7);
  return world + (world == "1" ? " rank" : " ranks");
}

// Why an earlier rank file cannot be continued by this collection, or "".
std::string unresumable(const data::TransitionFileInfo& info, const data::TransitionSchema& schema,
                        const CollectOptions& options, int world) {
  try {
    data::check_schema(info, schema);
  } catch (const data::DataError& e) {
    return std::string(e.what()) + " (it was collected from another backbone or with other settings)";
  }
  const std::string was = info.schema.plan, now = schema.plan;
  if (was != now && was.substr(0, was.rfind(" world=")) == now.substr(0, now.rfind(" world=")))
    return info.path + ": collected by " + ranks_of(was) + ", and rank r's file holds rank r's windows: continue it "
           "with " + ranks_of(was) + " (this run has " + std::to_string(world) + ")";
  if (was != now) return info.path + ": field 'plan' is \"" + was + "\", but this collection's is \"" + now + "\"";
  return "";
}

}  // namespace

std::vector<std::string> check_collection_resumable(const CollectionPlan& plan, const data::TransitionSchema& schema,
                                                    const CollectOptions& options, dist::Communicator& comm) {
  std::vector<std::string> notes;
  dist::run_on_root(comm, [&]() -> std::string {
    const fs::path dir = fs::path(options.dir) / plan.split;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.size() != 12 || name.rfind("rank", 0) != 0 || entry.path().extension() != ".h5") continue;
      const std::string path = entry.path().string();
      const int rank = std::atoi(name.substr(4, 5).c_str());
      std::string why;
      if (rank >= comm.world_size()) {
        why = path + ": left by a collection of more ranks than this run's " + std::to_string(comm.world_size());
      } else {
        data::TransitionFileInfo info;
        try {
          info = data::inspect_transition_file(path);
        } catch (const data::DataError& e) {
          why = e.what();
        }
        if (why.empty()) why = unresumable(info, schema, options, comm.world_size());
        if (why.empty() && info.compression != options.writer.compression)
          notes.push_back(path + " was written with --compression " + data::to_string(info.compression) + ": its " +
                          std::to_string(info.rows) + " rows are rewritten with " +
                          data::to_string(options.writer.compression) + " as the collection continues");
      }
      if (!why.empty())
        throw data::DataError(why + "; or remove " + options.dir + " to collect anew");
    }
    return "";
  });
  return notes;
}

CollectionPlan plan_collection(const std::string& split, int64_t split_tokens, int64_t num_samples,
                               int64_t seq_len, uint64_t seed, const std::string& source) {
  CollectionPlan plan;
  plan.split = split;
  plan.num_samples = num_samples;
  plan.seq_len = seq_len;
  plan.seed = seed;
  const int64_t stride = seq_len + 1;
  const int64_t needed = (num_samples + seq_len - 1) / seq_len;
  std::mt19937_64 rng(data::stream_seed(seed, split == "train" ? 0 : 1));
  const int64_t offset = static_cast<int64_t>(data::uniform_below(rng, static_cast<uint64_t>(stride)));
  const int64_t available = split_tokens > offset ? (split_tokens - offset) / stride : 0;
  if (available < needed)
    throw data::DataError(source + ": " + std::to_string(num_samples) + " transitions of the " + split +
                          " split need " + std::to_string(needed) + " windows of " + std::to_string(stride) +
                          " tokens, but its " + std::to_string(split_tokens) + " tokens hold " +
                          std::to_string(available) + ": collect fewer, or give more text");
  std::vector<int64_t> order(available);
  for (int64_t i = 0; i < available; ++i) order[i] = i;
  data::shuffle(order, rng);
  plan.starts.resize(needed);
  for (int64_t i = 0; i < needed; ++i) plan.starts[i] = offset + order[i] * stride;
  return plan;
}

data::TransitionRows compute_transitions(model::Backbone& model, const at::Tensor& windows,
                                         const std::vector<int64_t>& seq_ids) {
  torch::NoGradGuard no_grad;
  const int64_t batch = windows.size(0), steps = windows.size(1) - 1;
  const auto device = model->parameters().front().device();
  const auto latents = model->latents(windows.to(device)).to(torch::kCPU, torch::kFloat);  // [B, T+1, L, D]
  const auto state = latents.narrow(1, 0, steps);
  const auto delta = latents.narrow(1, 1, steps) - state;
  const auto seq = torch::tensor(seq_ids, torch::kLong).unsqueeze(1).expand({batch, steps});
  const auto pos = torch::arange(steps, torch::kInt).unsqueeze(0).expand({batch, steps});
  const auto flat = [&](const at::Tensor& t) { return t.reshape({batch * steps, -1}).squeeze(-1).contiguous(); };
  return {state.reshape({batch * steps, latents.size(2), latents.size(3)}).contiguous(),
          delta.reshape({batch * steps, latents.size(2), latents.size(3)}).contiguous(),
          flat(windows.narrow(1, 1, steps).to(torch::kInt)), flat(seq), flat(pos)};
}

std::string rank_file_path(const std::string& dir, const std::string& split, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank%05d.h5", rank);
  return (fs::path(dir) / split / name).string();
}

std::string master_file_path(const std::string& dir, const std::string& split) {
  return (fs::path(dir) / (split + ".h5")).string();
}

CollectResult collect_transitions(model::Backbone& model, const data::TokenSplit& split,
                                  const CollectionPlan& plan, const data::TransitionSchema& schema,
                                  const CollectOptions& options, dist::Communicator& comm) {
  const int rank = comm.rank(), world = comm.world_size();
  const auto start = Clock::now();
  CollectResult result;
  fs::create_directories(fs::path(options.dir) / plan.split);
  const auto [first, last] = plan.windows_of_rank(rank, world);
  const int64_t mine = plan.rows_of_rank(rank, world);
  bool stopped = false;
  {
    data::TransitionWriter writer(rank_file_path(options.dir, plan.split, rank), schema, options.writer);
    result.rows_resumed = writer.rows();
    if (writer.rows() > mine)
      throw data::DataError(rank_file_path(options.dir, plan.split, rank) + " holds " + std::to_string(writer.rows()) +
                            " rows, more than the " + std::to_string(mine) + " of this rank's plan");
    // Rows are written window by window, so the committed count says where to go on: from
    // the start of the batch it stopped in, as an uninterrupted collection batches the
    // windows (a window's rows depend in their last bits on the batch around it); the
    // rows already kept are computed again and skipped.
    int64_t done_before = 0, w = first;
    while (w < last) {
      const int64_t end = std::min(last, w + options.windows_per_batch);
      int64_t batch_rows = 0;
      for (int64_t i = w; i < end; ++i) batch_rows += plan.rows_of(i);
      if (done_before + batch_rows > writer.rows()) break;
      done_before += batch_rows;
      w = end;
    }
    auto last_report = Clock::now();
    while (w < last && !stopped) {
      const int64_t end = std::min(last, w + options.windows_per_batch);
      std::vector<int64_t> ids, starts;
      for (int64_t i = w; i < end; ++i) {
        ids.push_back(i);
        starts.push_back(plan.starts[i]);
      }
      auto rows = compute_transitions(model, data::gather_windows(split, starts, plan.seq_len), ids);
      int64_t keep = 0;
      for (int64_t i = w; i < end; ++i) keep += plan.rows_of(i);
      rows = rows.slice(0, keep);  // the last window of the plan is collected in part
      const int64_t skip = writer.rows() - done_before;
      done_before += keep;
      w = end;
      result.rows_written += rows.size() - skip;
      writer.append(skip > 0 ? rows.slice(skip, rows.size() - skip) : rows);
      if (rank == 0 && (seconds_since(last_report) > 10 || w == last)) {
        std::printf("distill: %s: rank 0 has %lld of its %lld transitions (%.0f/s)\n", plan.split.c_str(),
                    static_cast<long long>(writer.rows()), static_cast<long long>(mine),
                    result.rows_written / seconds_since(start));
        std::fflush(stdout);
        last_report = Clock::now();
      }
      stopped = dist::preemption_signalled();
    }
    result.writer = writer.close();
  }
  result.preempted = dist::all_reduce_scalar(comm, stopped ? 1.0 : 0.0, dist::ReduceOp::kMax) > 0;
  result.master = master_file_path(options.dir, plan.split);
  if (!result.preempted && rank == 0) {
    std::vector<std::string> files;
    for (int r = 0; r < world; ++r) files.push_back(rank_file_path(options.dir, plan.split, r));
    data::write_master_file(result.master, files);
  }
  comm.barrier();
  result.rows_total = result.preempted ? 0 : plan.num_samples;
  result.seconds = seconds_since(start);
  return result;
}

}  // namespace crsm::distill
