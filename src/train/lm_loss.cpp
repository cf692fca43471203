#include "train/lm_loss.h"

#include <torch/torch.h>

namespace crsm::train {

LossParts lm_loss(model::Backbone& model, const at::Tensor& windows, double value_weight) {
  const int64_t T = windows.size(1) - 1;
  const auto inputs = windows.narrow(1, 0, T);
  const auto targets = windows.narrow(1, 1, T);
  const auto out = model->forward(inputs);
  // Under bf16 autocast the logits come out in bfloat16; the losses are taken in float32.
  const auto logits = out.logits.to(torch::kFloat);
  const int64_t vocab = logits.size(-1);
  const auto lm = torch::nn::functional::cross_entropy(logits.reshape({-1, vocab}),
                                                       targets.reshape(-1));
  if (value_weight <= 0) return {lm, lm, torch::zeros({}, lm.options())};
  const auto p_true =
      torch::softmax(logits.detach(), -1).gather(-1, targets.unsqueeze(-1));  // [B, T, 1]
  const auto value = (out.values.to(torch::kFloat) - p_true).pow(2).mean(at::IntArrayRef{0, 1}).sum();
  return {lm + value_weight * value, lm, value};
}

double evaluate_lm_loss(model::Backbone& model, const at::Tensor& windows, int64_t batch, int64_t passes) {
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  double weighted = 0;
  int64_t rows = 0, taken = 0;
  for (int64_t start = 0; start < windows.size(0); start += batch, ++taken) {
    const auto part = windows.narrow(0, start, std::min(batch, windows.size(0) - start));
    weighted += lm_loss(model, part, 0.0).lm.item<double>() * part.size(0);
    rows += part.size(0);
  }
  for (; taken < passes; ++taken) lm_loss(model, torch::zeros({1, windows.size(1)}, windows.options()), 0.0);
  model->train(was_training);
  return rows > 0 ? weighted / static_cast<double>(rows) : 0.0;
}

int64_t evaluation_passes(int64_t rows, int64_t batch) { return (rows + batch - 1) / batch; }

}  // namespace crsm::train
