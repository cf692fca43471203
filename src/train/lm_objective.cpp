#include "train/lm_objective.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "train/lm_loss.h"

namespace crsm::train {
namespace {

std::string figures(double loss) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "loss %.4f | ppl %8.2f", loss, std::exp(loss));
  return buf;
}

}  // namespace

TokenWindows::TokenWindows(const data::TokenSplit& split, int64_t seq_len, int64_t batch_size, uint64_t seed, int rank,
                           int world, c10::Device device)
    : split_(split), seq_len_(seq_len), device_(device), sampler_(split.size(), seq_len, batch_size, seed, rank, world) {}

Batch TokenWindows::next() { return {data::gather_windows(split_, sampler_.next(), seq_len_).to(device_)}; }

LanguageModelObjective::LanguageModelObjective(model::Backbone model, checkpoint::Stage stage, double value_weight,
                                               at::Tensor val_windows, int64_t eval_batch, Precision precision)
    : model_(std::move(model)),
      value_loss_(checkpoint::trains_value_heads(stage)),
      value_weight_(value_loss_ ? value_weight : 0.0),
      val_windows_(std::move(val_windows)),
      eval_batch_(eval_batch),
      precision_(precision) {}

torch::nn::Module& LanguageModelObjective::module() { return *model_; }
TrainableParameters LanguageModelObjective::trainable() { return trainable_parameters(model_, value_loss_); }
void LanguageModelObjective::set_unit_hooks(model::UnitHooks* hooks) { model_->set_unit_hooks(hooks); }

std::vector<at::Tensor> LanguageModelObjective::losses(const Batch& batch) {
  const LossParts parts = lm_loss(model_, batch[0], value_weight_);
  return {parts.total, parts.lm, parts.value};
}

bool LanguageModelObjective::draws_random_numbers() const { return model_->config().dropout > 0; }

Report LanguageModelObjective::train_report(const std::vector<double>& means) const {
  Report r{{{"loss", means[0]}}, figures(means[0])};
  if (value_loss_) r.record["value_loss"] = means[1];
  return r;
}

Report LanguageModelObjective::validate(dist::Communicator& comm) {
  double weighted = 0;
  const auto rows = static_cast<double>(val_windows_.size(0));
  // Ranks' shares of the windows may differ by one; with gathered parameters every
  // rank must still take the same number of forward passes.
  const int64_t own = evaluation_passes(val_windows_.size(0), eval_batch_);
  const auto passes = model_->unit_hooks()  // every forward gathers: it is collective
                          ? static_cast<int64_t>(dist::all_reduce_scalar(comm, static_cast<double>(own), dist::ReduceOp::kMax))
                          : own;
  if (passes > 0) {
    AutocastScope autocast(precision_, val_windows_.device().type());
    weighted = evaluate_lm_loss(model_, val_windows_, eval_batch_, passes) * rows;
  }
  auto sums = torch::tensor({weighted, rows}, torch::TensorOptions().dtype(torch::kDouble)).to(comm.device());
  dist::all_reduce_now(comm, sums);
  sums = sums.cpu();
  const double loss = sums[0].item<double>() / sums[1].item<double>();
  return {{{"loss", loss}, {"ppl", std::exp(loss)}}, figures(loss)};
}

}  // namespace crsm::train
