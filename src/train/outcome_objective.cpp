#include "train/outcome_objective.h"

#include <torch/torch.h>

#include <cstdio>
#include <random>

#include "base/packed.h"
#include "data/data_error.h"
#include "data/portable_random.h"
#include "data/rollout_store.h"
#include "dist/runtime.h"
#include "metrics/calibration.h"
#include "train/trainable.h"

namespace crsm::train {
namespace {

// FNV-1a: a task's side of the split must not depend on the platform's std::hash.
uint64_t task_hash(const std::string& task) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : task) h = (h ^ c) * 1099511628211ull;
  return h;
}

OutcomeSequences sequences_of(const std::vector<data::Rollout>& rollouts) {
  const auto n = static_cast<int64_t>(rollouts.size());
  int64_t width = 1;
  for (const auto& r : rollouts) width = std::max<int64_t>(width, r.prompt.size() + r.answer.size());
  OutcomeSequences s{torch::zeros({n, width}, torch::kLong), torch::empty({n}, torch::kLong),
                     torch::empty({n}, torch::kLong), torch::empty({n}, torch::kFloat), torch::empty({n}, torch::kLong)};
  for (int64_t i = 0; i < n; ++i) {
    const auto& r = rollouts[i];
    auto* row = s.tokens[i].data_ptr<int64_t>();
    std::copy(r.prompt.begin(), r.prompt.end(), row);
    std::copy(r.answer.begin(), r.answer.end(), row + r.prompt.size());
    s.first[i] = static_cast<int64_t>(r.prompt.size()) - 1;
    s.last[i] = static_cast<int64_t>(r.prompt.size() + r.answer.size()) - 1;
    s.label[i] = r.label ? 1.0f : 0.0f;
    s.item[i] = r.item;
  }
  return s;
}

// Where a prediction is read: the state after the prompt plus `k` answer tokens, for k
// the first token, the middle and the end of each answer.
enum class Point { kFirst, kMid, kEnd };

int64_t position_of(Point point, int64_t first, int64_t last) {
  switch (point) {
    case Point::kFirst: return std::min(first + 1, last);
    case Point::kMid: return first + (last - first + 1) / 2;
    case Point::kEnd: return last;
  }
  return last;
}

// Binary cross-entropy of values [b, T, L] (probabilities) toward each row's label,
// averaged over the masked positions and the layers.
at::Tensor masked_bce(const at::Tensor& values, const at::Tensor& mask, const at::Tensor& label) {
  const auto target = label.view({-1, 1, 1}).expand_as(values);
  const auto bce = torch::binary_cross_entropy(values, target, {}, at::Reduction::None);
  const auto weights = mask.unsqueeze(-1).expand_as(bce);
  return (bce * weights).sum() / weights.sum();
}

// Per test output (rows of one item are consecutive in a rollout file), the share whose
// answer of highest value is right, whose first answer is, and that have any right.
struct Reranking {
  double pick = 0, first = 0, any = 0;
};

Reranking rerank(const std::vector<double>& items, const std::vector<metrics::Prediction>& end) {
  Reranking r;
  int64_t groups = 0;
  for (size_t i = 0; i < items.size();) {
    size_t j = i, best = i;
    bool any = false;
    for (; j < items.size() && items[j] == items[i]; ++j) {
      if (end[j].probability > end[best].probability) best = j;
      any = any || end[j].correct;
    }
    r.pick += end[best].correct, r.first += end[i].correct, r.any += any;
    groups += 1;
    i = j;
  }
  if (groups > 0) r.pick /= groups, r.first /= groups, r.any /= groups;
  return r;
}

std::string figures(double loss) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "value bce %.4f", loss);
  return buf;
}

}  // namespace

OutcomeSplit read_outcome_split(const std::string& rollouts, int64_t held_out_percent) {
  const data::RolloutReader reader(rollouts);
  std::vector<data::Rollout> train, val;
  constexpr int64_t kPiece = 4096;
  for (int64_t at = 0; at < reader.rows(); at += kPiece) {
    const auto rows = reader.read(at, std::min(kPiece, reader.rows() - at));
    for (int64_t r = 0; r < rows.size(); ++r) {
      auto rollout = data::rollout_at(rows, r);
      if (rollout.prompt.empty())
        throw data::DataError(rollouts + ": row " + std::to_string(at + r) + " has an empty prompt");
      const bool held_out = static_cast<int64_t>(task_hash(rollout.task) % 100) >= 100 - held_out_percent;
      (held_out ? val : train).push_back(std::move(rollout));
    }
  }
  if (train.empty() || val.empty())
    throw data::DataError(rollouts + ": " + std::to_string(reader.rows()) + " rollouts leave " +
                          std::to_string(train.size()) + " to train on and " + std::to_string(val.size()) +
                          " held out (a tenth of the tasks): sample more tasks");
  return {sequences_of(train), sequences_of(val)};
}

Batch outcome_batch(const OutcomeSequences& rows, const std::vector<int64_t>& indexes, c10::Device device) {
  const auto index = torch::tensor(indexes, torch::kLong);
  const auto first = rows.first.index_select(0, index), last = rows.last.index_select(0, index);
  const int64_t width = last.max().item<int64_t>() + 1;
  const auto positions = torch::arange(width, torch::kLong).unsqueeze(0);
  const auto mask = (positions >= first.unsqueeze(1)).logical_and(positions <= last.unsqueeze(1)).to(torch::kFloat);
  return {rows.tokens.index_select(0, index).narrow(1, 0, width).to(device), mask.to(device),
          rows.label.index_select(0, index).to(device)};
}

OutcomeBatches::OutcomeBatches(OutcomeSequences rows, int64_t global_batch, uint64_t seed, int rank, int world,
                               c10::Device device)
    : rows_(std::move(rows)),
      global_batch_(global_batch),
      batches_per_epoch_(rows_.size() / global_batch),
      seed_(seed),
      rank_(rank),
      world_(world),
      device_(device) {
  if (global_batch % world != 0)
    throw data::DataError("a global batch of " + std::to_string(global_batch) + " rollouts does not divide over " +
                          std::to_string(world) + " ranks");
  if (batches_per_epoch_ == 0)
    throw data::DataError(std::to_string(rows_.size()) + " rollouts to train on are fewer than one global batch of " +
                          std::to_string(global_batch) + ": sample more, or lower --batch-size");
}

Batch OutcomeBatches::next() {
  if (order_epoch_ != position_.epoch) {
    order_.resize(static_cast<size_t>(rows_.size()));
    for (int64_t i = 0; i < rows_.size(); ++i) order_[i] = i;
    std::mt19937_64 rng(data::stream_seed(seed_, static_cast<uint64_t>(position_.epoch)));
    data::shuffle(order_, rng);
    order_epoch_ = position_.epoch;
  }
  const int64_t begin = position_.batch * global_batch_ + rank_ * rows();
  const std::vector<int64_t> mine(order_.begin() + begin, order_.begin() + begin + rows());
  if (++position_.batch == batches_per_epoch_) position_ = {position_.epoch + 1, 0};
  return outcome_batch(rows_, mine, device_);
}

OutcomeObjective::OutcomeObjective(model::Backbone model, OutcomeSequences val, int64_t eval_batch)
    : model_(std::move(model)), val_(std::move(val)), eval_batch_(eval_batch) {
  if (model_->config().value_target != model::ValueTarget::kOutcome)
    throw std::logic_error("OutcomeObjective: the model's value heads are not outcome heads");
}

torch::nn::Module& OutcomeObjective::module() { return *model_; }
TrainableParameters OutcomeObjective::trainable() { return value_head_parameters(model_); }

std::vector<at::Tensor> OutcomeObjective::losses(const Batch& batch) {
  const auto values = model_->forward(batch[0]).values.to(torch::kFloat);  // [b, T, L], probabilities
  const auto loss = masked_bce(values, batch[1], batch[2]);
  return {loss, loss.detach()};  // backward runs on the first, the second is reported
}

Report OutcomeObjective::train_report(const std::vector<double>& means) const {
  return {{{"loss", means[0]}}, figures(means[0])};
}

Report OutcomeObjective::validate(dist::Communicator& comm) {
  torch::NoGradGuard no_grad;
  const bool was_training = model_->is_training();
  model_->eval();
  // Each rank its share of the held-out rows; every consensus value and label crosses to
  // every rank, which then agree on the figures.
  const auto [from, to] = dist::rank_share(val_.size(), comm.rank(), comm.world_size());
  std::vector<double> loss_sum_and_count(2, 0.0), mine;  // per row: label, then a value per point
  const auto device = model_->parameters().front().device();
  for (int64_t start = from; start < to; start += eval_batch_) {
    std::vector<int64_t> indexes;
    for (int64_t i = start; i < std::min(to, start + eval_batch_); ++i) indexes.push_back(i);
    const Batch batch = outcome_batch(val_, indexes, device);
    const auto probabilities = model_->forward(batch[0]).values.to(torch::kFloat);
    const double positions = batch[1].sum().item<double>();
    loss_sum_and_count[0] += masked_bce(probabilities, batch[1], batch[2]).item<double>() * positions;
    loss_sum_and_count[1] += positions;
    const auto values = probabilities.to(torch::kCPU, torch::kDouble).contiguous();
    const int64_t layers = values.size(2), width = values.size(1);
    for (size_t j = 0; j < indexes.size(); ++j) {
      const int64_t i = indexes[j];
      mine.push_back(val_.label[i].item<float>());
      mine.push_back(static_cast<double>(val_.item[i].item<int64_t>()));
      for (Point p : {Point::kFirst, Point::kMid, Point::kEnd}) {
        const int64_t at = position_of(p, val_.first[i].item<int64_t>(), val_.last[i].item<int64_t>());
        mine.push_back(model::consensus_value(values.data_ptr<double>() + (j * width + at) * layers, layers));
      }
    }
  }
  model_->train(was_training);
  base::Packer packer;
  packer(mine, loss_sum_and_count);
  std::vector<metrics::Prediction> at[3];
  std::vector<double> items;  // per row, beside at[]
  double loss_sum = 0, positions = 0;
  for (const auto& part : dist::all_gather_strings(comm, packer.bytes())) {
    std::vector<double> theirs, sums;
    base::Unpacker unpacker(part);
    unpacker(theirs, sums);
    unpacker.finish();
    loss_sum += sums[0];
    positions += sums[1];
    for (size_t k = 0; k + 5 <= theirs.size(); k += 5) {
      items.push_back(theirs[k + 1]);
      for (int p = 0; p < 3; ++p) at[p].push_back({theirs[k + 2 + p], theirs[k] > 0.5});
    }
  }
  const Reranking picks = rerank(items, at[2]);
  const double loss = positions > 0 ? loss_sum / positions : 0.0;
  Report r{{{"loss", loss},
            {"auc_first", metrics::roc_auc(at[0])},
            {"auc_mid", metrics::roc_auc(at[1])},
            {"auc_end", metrics::roc_auc(at[2])},
            {"ece_end", metrics::expected_calibration_error(at[2])},
            {"pick", picks.pick},
            {"first", picks.first},
            {"any", picks.any}},
           ""};
  char line[200];
  std::snprintf(line, sizeof line,
                "%s | AUC first %.3f, mid %.3f, end %.3f | ECE end %.3f | right by value %.3f, first %.3f, any %.3f",
                figures(loss).c_str(), r.record["auc_first"].get<double>(), r.record["auc_mid"].get<double>(),
                r.record["auc_end"].get<double>(), r.record["ece_end"].get<double>(), picks.pick, picks.first, picks.any);
  r.line = line;
  return r;
}

}  // namespace crsm::train
