#include "model/generation.h"

#include <torch/torch.h>

#include <stdexcept>

#include "base/error.h"

namespace crsm::model {

int64_t sample_token(const at::Tensor& logits, const SamplingOptions& options,
                     std::mt19937_64& rng) {
  const auto scores = logits.detach().to(torch::kCPU, torch::kDouble).reshape(-1);
  if (!scores.isfinite().all().item<bool>())
    throw Error("generate: the model's logits are not finite (the checkpoint's weights have diverged)");
  if (options.temperature <= 0) return scores.argmax().item<int64_t>();

  // Shifted so the largest score is 0: a tiny temperature then scales the others towards
  // -inf (greedy in the limit) instead of overflowing to inf - inf = NaN.
  auto probs = torch::softmax((scores - scores.max()) / options.temperature, 0);
  auto [sorted, order] = probs.sort(/*dim=*/0, /*descending=*/true);
  int64_t keep = sorted.size(0);
  if (options.top_k > 0) keep = std::min(keep, options.top_k);
  if (options.top_p < 1.0) {
    // Smallest prefix whose mass reaches top_p (always at least one token).
    const auto cumulative = sorted.cumsum(0);
    const int64_t below = (cumulative < options.top_p).sum().item<int64_t>();
    keep = std::min(keep, below + 1);
  }
  const auto kept = sorted.narrow(0, 0, keep);
  const auto mass = kept.cumsum(0);
  // Uniform in [0, total) from the top 53 bits of one engine draw.
  const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0) *
                   mass[keep - 1].item<double>();
  const auto* m = mass.data_ptr<double>();
  int64_t pick = 0;
  while (pick < keep - 1 && m[pick] <= u) ++pick;
  return order[pick].item<int64_t>();
}

std::vector<int64_t> decode(Backbone& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                            const DecodingHooks& hooks) {
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt must hold at least one token");
  const auto device = model->parameters().front().device();
  ModelState state;
  auto out = model->prefill(torch::tensor(prompt, torch::kLong).unsqueeze(0).to(device), state);
  return decode_from(std::move(out), std::move(state), max_new_tokens, hooks, device);
}

std::vector<int64_t> decode_from(StepOutput out, ModelState state, int64_t max_new_tokens, const DecodingHooks& hooks,
                                 const c10::Device& device) {
  std::vector<int64_t> taken;
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int64_t next = hooks.choose(out, state);
    const StepVerdict verdict = hooks.observe(next, out);
    if (verdict == StepVerdict::kStop) break;
    taken.push_back(next);
    if (verdict == StepVerdict::kTakeAndStop || i + 1 == max_new_tokens) break;
    out = hooks.step(torch::tensor({next}, torch::kLong).to(device), state);
  }
  return taken;
}

std::vector<int64_t> generate(Backbone& model, const std::vector<int64_t>& prompt,
                              int64_t max_new_tokens, const SamplingOptions& options,
                              uint64_t seed, int64_t stop_token,
                              const std::function<void(int64_t)>& on_token) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  std::mt19937_64 rng(seed);
  DecodingHooks hooks;
  hooks.choose = [&](const StepOutput& out, const ModelState&) { return sample_token(out.logits[0], options, rng); };
  hooks.observe = [&](int64_t token, const StepOutput&) {
    if (token == stop_token) return StepVerdict::kStop;
    if (on_token) on_token(token);
    return StepVerdict::kTake;
  };
  hooks.step = [&](const at::Tensor& token, ModelState& state) { return model->step(token, state); };
  const auto generated = decode(model, prompt, max_new_tokens, hooks);
  model->train(was_training);
  return generated;
}

}  // namespace crsm::model
