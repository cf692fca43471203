#include "distill/delta_score.h"

#include <torch/torch.h>

#include <stdexcept>

namespace crsm::distill {
namespace {

enum Sum { kSquaredError, kAbsError, kTruth, kSquaredTruth, kSquaredFromMean, kSums };

std::vector<double> to_vector(const at::Tensor& t) {
  const auto c = t.to(torch::kCPU, torch::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

}  // namespace

bool DeltaScore::beats_trivial() const {
  for (size_t l = 0; l < r2.size(); ++l)
    if (!(r2[l] > r2_zero[l] && r2[l] > r2_mean[l])) return false;
  return !r2.empty();
}

nlohmann::json DeltaScore::to_json() const {
  return {{"rows", rows},       {"avg_mse", avg_mse}, {"avg_mae", avg_mae},     {"avg_r2", avg_r2},
          {"mse", mse},         {"mae", mae},         {"r2", r2},               {"r2_zero_delta", r2_zero},
          {"r2_mean_delta", r2_mean}, {"beats_trivial", beats_trivial()}};
}

DeltaScorer::DeltaScorer(const at::Tensor& mean_delta)
    : mean_(mean_delta.to(torch::kCPU, torch::kDouble)),
      sums_(torch::zeros({kSums, mean_delta.size(0), mean_delta.size(1)}, torch::kDouble)) {}

void DeltaScorer::add(const at::Tensor& predicted, const at::Tensor& truth) {
  if (predicted.sizes() != truth.sizes() || truth.dim() != 3 || truth.size(1) != mean_.size(0) ||
      truth.size(2) != mean_.size(1))
    throw std::invalid_argument("DeltaScorer::add: predicted and truth must both be [n, L, D] of the mean's L, D");
  torch::NoGradGuard no_grad;
  const auto y = truth.to(torch::kCPU, torch::kDouble);
  const auto e = predicted.to(torch::kCPU, torch::kDouble) - y;
  sums_[kSquaredError] += e.pow(2).sum(0);
  sums_[kAbsError] += e.abs().sum(0);
  sums_[kTruth] += y.sum(0);
  sums_[kSquaredTruth] += y.pow(2).sum(0);
  sums_[kSquaredFromMean] += (y - mean_).pow(2).sum(0);
  rows_ += truth.size(0);
}

void DeltaScorer::all_reduce(dist::Communicator& comm) {
  auto flat = torch::cat({sums_.flatten(), torch::tensor({static_cast<double>(rows_)}, torch::kDouble)});
  auto on_device = flat.to(comm.device());
  dist::all_reduce_now(comm, on_device);
  flat = on_device.cpu();
  sums_ = flat.narrow(0, 0, sums_.numel()).view(sums_.sizes()).clone();
  rows_ = static_cast<int64_t>(flat[-1].item<double>());
}

DeltaScore DeltaScorer::score() const {
  DeltaScore s;
  s.rows = rows_;
  if (rows_ == 0) throw std::invalid_argument("DeltaScorer::score: no rows were added");
  const double n = static_cast<double>(rows_), elements = n * static_cast<double>(mean_.size(1));
  // Per layer: sum over dimensions of what was summed over rows.
  const auto per_layer = [&](Sum k) { return sums_[k].sum(1); };
  const auto total = sums_[kSquaredTruth] - sums_[kTruth].pow(2) / n;  // [L, D]
  const auto sst = total.sum(1);
  s.mse = to_vector(per_layer(kSquaredError) / elements);
  s.mae = to_vector(per_layer(kAbsError) / elements);
  s.r2 = to_vector(1 - per_layer(kSquaredError) / sst);
  s.r2_zero = to_vector(1 - per_layer(kSquaredTruth) / sst);
  s.r2_mean = to_vector(1 - per_layer(kSquaredFromMean) / sst);
  s.avg_mse = mean_of(s.mse);
  s.avg_mae = mean_of(s.mae);
  s.avg_r2 = mean_of(s.r2);
  return s;
}

}  // namespace crsm::distill
