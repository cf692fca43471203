#include "distill/dynamics_training.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "base/atomic_file.h"
#include "checkpoint/run_dir.h"
#include "data/data_error.h"
#include "data/portable_random.h"
#include "checkpoint/store.h"
#include "checkpoint/resume_across_ranks.h"
#include "dist/runtime.h"
#include "model/tensor_file.h"
#include "train/adamw.h"
#include "distill/delta_score.h"
#include "metrics/metrics_log.h"

namespace crsm::distill {
namespace {

namespace fs = std::filesystem;

// Reads rows [first, first + count) of a file in pieces of `piece` rows.
template <typename Visit>
void for_each_piece(const data::TransitionReader& reader, int64_t first, int64_t count, int64_t piece,
                    Visit visit) {
  for (int64_t at = 0; at < count; at += piece) visit(reader.read(first + at, std::min(piece, count - at)));
}

class DynamicsObjective : public train::Objective {
 public:
  DynamicsObjective(model::LatentDynamics dynamics, at::Tensor embeddings, checkpoint::DeltaMoments moments,
                    const std::string& val_file)
      : dynamics_(std::move(dynamics)),
        embeddings_(std::move(embeddings)),
        moments_(std::move(moments)),
        inverse_variance_(1.0 / moments_.variance.clamp_min(1e-12)),
        val_file_(val_file) {}

  torch::nn::Module& module() override { return *dynamics_; }

  train::TrainableParameters trainable() override {
    train::TrainableParameters out;
    for (const auto& p : dynamics_->named_parameters(/*recurse=*/true)) {
      out.params.emplace_back(p.key(), p.value());
      out.decay.push_back(train::decays(p.key(), p.value().dim()));
    }
    return out;
  }

  std::vector<at::Tensor> losses(const train::Batch& batch) override {
    const auto predicted = dynamics_(batch[0], embeddings_.index_select(0, batch[2]));
    const auto mse = (predicted - batch[1]).pow(2).mean(std::vector<int64_t>{0, 2});  // per layer
    const auto loss = (mse * inverse_variance_).mean();
    return {loss, loss.detach(), mse.mean().detach()};
  }

  train::Report train_report(const std::vector<double>& means) const override {
    char line[96];
    std::snprintf(line, sizeof line, "loss %.4f | mse %.6f", means[0], means[1]);
    return {{{"loss", means[0]}, {"mse", means[1]}}, line};
  }

  train::Report validate(dist::Communicator& comm) override {
    torch::NoGradGuard no_grad;
    dynamics_->eval();
    data::TransitionReader reader(val_file_);
    const auto [lo, hi] = dist::rank_share(reader.rows(), comm.rank(), comm.world_size());
    DeltaScorer scorer(moments_.mean);
    for_each_piece(reader, lo, hi - lo, 4096, [&](const data::TransitionRows& rows) {
      const auto device = embeddings_.device();
      const auto predicted = dynamics_(rows.state.to(device), embeddings_.index_select(0, rows.action.to(device, torch::kLong)));
      scorer.add(predicted, rows.delta);
    });
    dynamics_->train();
    scorer.all_reduce(comm);
    const DeltaScore score = scorer.score();
    // The training loss's scale: mean over layers of MSE_l / Var_l.
    double loss = 0;
    const auto variance = moments_.variance.to(torch::kCPU, torch::kDouble);
    for (size_t l = 0; l < score.mse.size(); ++l)
      loss += score.mse[l] / std::max(variance[static_cast<int64_t>(l)].item<double>(), 1e-12);
    loss /= static_cast<double>(score.mse.size());
    nlohmann::json record = score.to_json();
    record["loss"] = loss;
    std::string line = "loss " + format(loss, "%.4f") + " | mse " + format(score.avg_mse, "%.6f") + " | mae " +
                       format(score.avg_mae, "%.5f") + " | R² " + format(score.avg_r2, "%.3f") + " [";
    for (size_t l = 0; l < score.r2.size(); ++l) line += (l ? " " : "") + format(score.r2[l], "%.3f");
    return {record, line + "]"};
  }

 private:
  static std::string format(double v, const char* f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
  }

  model::LatentDynamics dynamics_;
  at::Tensor embeddings_;
  checkpoint::DeltaMoments moments_;
  at::Tensor inverse_variance_;
  std::string val_file_;
};

double best_validation_loss(const std::string& run_dir) {
  double best = std::numeric_limits<double>::infinity();
  for (const auto& point : metrics::read_metrics(run_dir).val) best = std::min(best, point.loss);
  return best;
}

}  // namespace

TransitionBatches::TransitionBatches(const std::string& path, int64_t global_batch, uint64_t seed, int rank,
                                     int world, int64_t block_rows, int64_t buffer_blocks)
    : reader_(path), seed_(seed), block_rows_(block_rows), group_rows_(block_rows * buffer_blocks) {
  if (global_batch % world != 0)
    throw UsageError("dynamics_batch_size " + std::to_string(global_batch) +
                     " is the global batch and must divide evenly among the " + std::to_string(world) + " ranks");
  local_batch_ = global_batch / world;
  std::tie(first_, rows_) = dist::rank_share(reader_.rows(), rank, world);
  rows_ -= first_;
  // Every rank takes the same number of steps: as many as the smallest slice allows.
  batches_per_epoch_ = reader_.rows() / world / local_batch_;
  if (batches_per_epoch_ == 0)
    throw data::DataError(path + ": " + std::to_string(reader_.rows()) + " transitions make no batch of " +
                          std::to_string(global_batch) + " over " + std::to_string(world) +
                          " ranks: collect more or lower dynamics_batch_size");
}

// Group g of an epoch: blocks order[g * k, (g + 1) * k) of the slice, rows shuffled.
void TransitionBatches::load_group(int64_t epoch, int64_t group) {
  const int64_t blocks = (rows_ + block_rows_ - 1) / block_rows_, per_group = group_rows_ / block_rows_;
  std::vector<int64_t> order(blocks);
  for (int64_t i = 0; i < blocks; ++i) order[i] = i;
  std::mt19937_64 rng(data::stream_seed(seed_, static_cast<uint64_t>(epoch)));
  data::shuffle(order, rng);
  std::vector<at::Tensor> state, delta, action;
  for (int64_t i = group * per_group; i < std::min(blocks, (group + 1) * per_group); ++i) {
    const int64_t lo = order[i] * block_rows_, n = std::min(block_rows_, rows_ - lo);
    const auto rows = reader_.read(first_ + lo, n);
    state.push_back(rows.state);
    delta.push_back(rows.delta);
    action.push_back(rows.action.to(torch::kLong));
  }
  const int64_t n = torch::cat(action).size(0);
  std::vector<int64_t> shuffled(n);
  for (int64_t i = 0; i < n; ++i) shuffled[i] = i;
  std::mt19937_64 group_rng(data::stream_seed(data::stream_seed(seed_, static_cast<uint64_t>(epoch)), group + 1));
  data::shuffle(shuffled, group_rng);
  const auto index = torch::tensor(shuffled, torch::kLong);
  group_ = {torch::cat(state).index_select(0, index), torch::cat(delta).index_select(0, index),
            torch::cat(action).index_select(0, index)};
  loaded_epoch_ = epoch;
  loaded_group_ = group;
}

train::Batch TransitionBatches::next() {
  // Groups hold group_rows_ rows except the one with the slice's short last block, so a
  // batch is located by walking the groups of the epoch.
  const int64_t blocks = (rows_ + block_rows_ - 1) / block_rows_, per_group = group_rows_ / block_rows_;
  const int64_t groups = (blocks + per_group - 1) / per_group;
  int64_t at = position_.batch * local_batch_, need = local_batch_;
  std::vector<train::Batch> parts;
  for (int64_t g = 0; g < groups && need > 0; ++g) {
    if (loaded_epoch_ != position_.epoch || loaded_group_ != g) load_group(position_.epoch, g);
    const int64_t size = group_[0].size(0);
    if (at >= size) {
      at -= size;
      continue;
    }
    const int64_t take = std::min(need, size - at);
    train::Batch part;
    for (const auto& t : group_) part.push_back(t.narrow(0, at, take));
    parts.push_back(std::move(part));
    need -= take;
    at = 0;
  }
  train::Batch batch;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<at::Tensor> pieces;
    for (const auto& p : parts) pieces.push_back(p[i]);
    batch.push_back(torch::cat(pieces));
  }
  if (++position_.batch == batches_per_epoch_) position_ = {position_.epoch + 1, 0};
  return batch;
}

checkpoint::DeltaMoments delta_moments(const std::string& path, dist::Communicator& comm) {
  data::TransitionReader reader(path);
  const auto& schema = reader.info().schema;
  const auto [lo, hi] = dist::rank_share(reader.rows(), comm.rank(), comm.world_size());
  auto sums = torch::zeros({2, schema.num_layers, schema.d_model}, torch::kDouble);
  for_each_piece(reader, lo, hi - lo, 4096, [&](const data::TransitionRows& rows) {
    const auto d = rows.delta.to(torch::kDouble);
    sums[0] += d.sum(0);
    sums[1] += d.pow(2).sum(0);
  });
  auto flat = sums.flatten().to(comm.device());
  dist::all_reduce_now(comm, flat);
  sums = flat.cpu().view(sums.sizes());
  const double n = static_cast<double>(reader.rows());
  const auto mean = sums[0] / n;
  const auto variance = (sums[1] / n - mean.pow(2)).mean(1);
  return {mean.to(torch::kFloat), variance.to(torch::kFloat)};
}


void check_dynamics_resumable(const std::string& run_dir, const model::DynamicsConfig& arch) {
  const std::string root = checkpoint::RunDir(run_dir).checkpoints();
  if (!checkpoint::holds_checkpoints(root)) return;
  const auto newest = checkpoint::resolve_resume("auto", root, nullptr);
  if (!newest) return;
  const auto saved = checkpoint::read_manifest(*newest).value("dynamics", nlohmann::json::object());
  const std::string was_arch = saved.value("arch", std::string("?"));
  const int64_t was_hidden = saved.value("hidden", int64_t{-1});
  if (was_arch == model::to_string(arch.arch) && was_hidden == arch.resolved_hidden()) return;
  throw UsageError(run_dir + " holds dynamics training of a " + was_arch + " model of hidden width " +
                   std::to_string(was_hidden) + " (" + *newest + "); this run asks for " + model::to_string(arch.arch) +
                   " of hidden width " + std::to_string(arch.resolved_hidden()) + ": continue it with --arch " + was_arch +
                   " --hidden " + std::to_string(was_hidden) + ", or choose a new --output-path");
}

DynamicsResult train_dynamics(const DynamicsRun& run, dist::Communicator& comm) {
  const int rank = comm.rank(), world = comm.world_size();
  const auto train_info = data::inspect_transition_file(run.train_file);
  data::check_schema(data::inspect_transition_file(run.val_file), train_info.schema);
  const uint64_t seed = run.config.value("seed", uint64_t{42});
  TransitionBatches source(run.train_file, run.batch_size, seed, rank, world);
  const checkpoint::DeltaMoments moments = delta_moments(run.train_file, comm);

  torch::manual_seed(seed);
  model::LatentDynamics dynamics(run.arch);
  dynamics->to(run.embeddings.device());
  const std::string ckpt_root = checkpoint::RunDir(run.run_dir).checkpoints();
  train::LoopOptions loop;
  if (run.resume) {
    std::vector<std::string> skipped;
    loop.continue_from = checkpoint::resolve_resume_across_ranks(comm, "auto", ckpt_root, &skipped);
    for (const auto& note : skipped)
      if (rank == 0) std::printf("resume: %s\n", note.c_str());
    if (loop.continue_from)
      model::load_module_tensors(
          *dynamics, model::load_tensor_file((std::filesystem::path(*loop.continue_from) / checkpoint::kModelFile).string()),
          *loop.continue_from);
  }
  loop.stage = checkpoint::Stage::kDynamics;
  loop.run_dir = run.run_dir;
  loop.tensorboard_dir = run.tensorboard_dir;
  loop.config = run.config;
  loop.run_info = run.run_info;
  loop.manifest_extra = {{"dynamics", {{"arch", model::to_string(run.arch.arch)},
                                       {"hidden", run.arch.resolved_hidden()},
                                       {"backbone", run.backbone_dir}}}};
  loop.rate_key = "transitions_per_s";
  loop.rate_unit = "tr/s";
  loop.items_per_step = run.batch_size;
  loop.schedule = train::plan_schedule(run.length, source.batches_per_epoch(), /*warmup_cap=*/100);
  loop.optimizer = run.optimizer;
  loop.cadence = run.cadence;
  loop.cadence.eval_every = source.batches_per_epoch();
  loop.profile = run.profile;
  loop.seed = static_cast<int64_t>(seed);
  char banner[320];
  std::snprintf(banner, sizeof banner,
                "distill: training %s dynamics (hidden %lld) on %lld transitions, %lld held out | %lld batches of %lld "
                "per epoch | %lld steps | %d rank%s",
                model::to_string(run.arch.arch).c_str(), static_cast<long long>(run.arch.resolved_hidden()),
                static_cast<long long>(train_info.rows),
                static_cast<long long>(data::inspect_transition_file(run.val_file).rows),
                static_cast<long long>(source.batches_per_epoch()), static_cast<long long>(run.batch_size),
                static_cast<long long>(loop.schedule.total_steps), world, world == 1 ? "" : "s");
  loop.banner = banner;

  DynamicsObjective objective(dynamics, run.embeddings, moments, run.val_file);
  DynamicsResult result;
  result.train = train::run_training_loop(objective, source, loop, comm);
  if (result.train.exit_status != kExitOk) return result;
  result.validation = result.train.final_validation;
  if (result.validation.is_null()) result.validation = objective.validate(comm).record;
  if (rank == 0) {
    const checkpoint::RunDir out(run.run_dir);
    checkpoint::save_dynamics(out.dynamics(), {dynamics, moments, train_info.schema.backbone_sha256});
    nlohmann::json meta = run.metadata;
    meta["d_model"] = run.arch.d_model;
    meta["num_layers"] = run.arch.num_layers;
    meta["vocab_size"] = train_info.schema.vocab_size;
    meta["dynamics_arch"] = model::to_string(run.arch.arch);
    meta["dynamics_hidden"] = run.arch.resolved_hidden();
    meta["epochs"] = run.length.epochs;
    meta["lr"] = run.optimizer.lr;
    meta["steps"] = result.train.steps;
    meta["best_val_loss"] = best_validation_loss(run.run_dir);
    meta["final_val_loss"] = result.validation.value("loss", 0.0);
    meta["r2"] = result.validation.value("avg_r2", 0.0);
    meta["validation"] = result.validation;
    meta["backbone_sha256"] = train_info.schema.backbone_sha256;
    base::write_file_atomically(out.dynamics_report(), meta.dump(2) + "\n");
  }
  comm.barrier();
  return result;
}

}  // namespace crsm::distill
