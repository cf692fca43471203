#include "distill/dynamics_quality.h"

#include <torch/torch.h>

#include "data/batch_sampler.h"
#include "distill/distill_collect.h"

namespace crsm::distill {

std::string mse_verdict(double avg_mse) {
  if (avg_mse < 0.01) return "excellent";
  if (avg_mse < 0.1) return "good";
  if (avg_mse < 1.0) return "acceptable";
  return "poor";
}

nlohmann::json QualityReport::to_json() const {
  nlohmann::json ks = nlohmann::json::array();
  for (const auto& r : rollouts)
    ks.push_back({{"k", r.k}, {"starts", r.starts}, {"mse", r.mse}, {"zero_mse", r.zero_mse}, {"r2", r.r2}});
  nlohmann::json j = one_step.to_json();
  j["verdict"] = verdict;
  j["rollouts"] = ks;
  return j;
}

namespace {

// Rollouts of k steps from every start t in [0, T − k] of windows whose latents are
// [B, T + 1, L, D] and whose action embeddings are [B, T + 1, D] (of tokens 0..T).
RolloutError rollout_error(model::LatentDynamics& dynamics, const at::Tensor& latents, const at::Tensor& embs,
                           int64_t k) {
  const int64_t batch = latents.size(0), steps = latents.size(1) - 1, starts = steps - k + 1;
  const auto flat = [&](const at::Tensor& t) { return t.reshape({batch * starts, t.size(2), t.size(3)}); };
  const auto start = flat(latents.narrow(1, 0, starts));
  const auto exact = flat(latents.narrow(1, k, starts));
  // Actions x_{t+1} .. x_{t+k} for each start t: [k, B * starts, D].
  std::vector<at::Tensor> actions;
  for (int64_t j = 1; j <= k; ++j) actions.push_back(embs.narrow(1, j, starts).reshape({batch * starts, embs.size(2)}));
  const auto predicted = model::rollout(dynamics, start, torch::stack(actions)).select(0, k - 1);
  const auto moved = exact - start;
  RolloutError r;
  r.k = k;
  r.starts = batch * starts;
  r.mse = (predicted - exact).pow(2).mean().item<double>();
  r.zero_mse = moved.pow(2).mean().item<double>();
  const double sst = (moved - moved.mean(0, true)).pow(2).sum().item<double>();
  r.r2 = 1.0 - (predicted - exact).pow(2).sum().item<double>() / sst;
  return r;
}

}  // namespace

QualityReport check_dynamics_quality(model::Backbone& backbone, const checkpoint::SavedDynamics& dynamics,
                                     const data::TokenSplit& split, int64_t samples, int64_t seq_len,
                                     uint64_t seed, const std::vector<int64_t>& ks, const std::string& source) {
  torch::NoGradGuard no_grad;
  backbone->eval();
  auto dyn = dynamics.model;
  dyn->eval();
  const CollectionPlan plan = plan_collection("val", split.size(), samples, seq_len, seed, source);
  const auto windows = data::gather_windows(split, plan.starts, seq_len);
  const auto latents = backbone->latents(windows);  // [B, T + 1, L, D]
  const auto embs = backbone->embed(windows);       // [B, T + 1, D]
  QualityReport report;
  // One step: the first `samples` transitions of the plan, as a collection records them.
  const int64_t batch = windows.size(0), L = latents.size(2), D = latents.size(3);
  const auto state = latents.narrow(1, 0, seq_len).reshape({batch * seq_len, L, D}).narrow(0, 0, samples);
  const auto delta = (latents.narrow(1, 1, seq_len).reshape({batch * seq_len, L, D}).narrow(0, 0, samples) - state);
  const auto action = embs.narrow(1, 1, seq_len).reshape({batch * seq_len, D}).narrow(0, 0, samples);
  DeltaScorer scorer(dynamics.moments.mean);
  for (int64_t at = 0; at < samples; at += 4096) {
    const int64_t n = std::min<int64_t>(4096, samples - at);
    scorer.add(dyn(state.narrow(0, at, n), action.narrow(0, at, n)), delta.narrow(0, at, n));
  }
  report.one_step = scorer.score();
  report.verdict = mse_verdict(report.one_step.avg_mse);
  for (int64_t k : ks) report.rollouts.push_back(rollout_error(dyn, latents, embs, k));
  return report;
}

}  // namespace crsm::distill
