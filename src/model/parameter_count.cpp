#include "model/parameter_count.h"

namespace crsm::model {

std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const ModelConfig& c) {
  const int64_t di = c.d_inner(), r = c.resolved_dt_rank(), n = c.d_state, d = c.d_model;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"embedding.weight", {c.vocab_size, d}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string b = "layers." + std::to_string(l) + ".";
    out.push_back({b + "norm.weight", {d}});
    // A module's own parameters come before those of its children.
    out.push_back({b + "mixer.A_log", {di, n}});
    out.push_back({b + "mixer.D", {di}});
    out.push_back({b + "mixer.in_proj.weight", {2 * di, d}});
    out.push_back({b + "mixer.conv1d.weight", {di, 1, c.d_conv}});
    out.push_back({b + "mixer.conv1d.bias", {di}});
    out.push_back({b + "mixer.x_proj.weight", {r + 2 * n, di}});
    out.push_back({b + "mixer.dt_proj.weight", {di, r}});
    out.push_back({b + "mixer.dt_proj.bias", {di}});
    out.push_back({b + "mixer.out_proj.weight", {d, di}});
    if (c.d_ffn == 0) continue;  // the Mamba-1 block: no feed-forward branch
    out.push_back({b + "ffn_norm.weight", {d}});
    out.push_back({b + "ffn.0.weight", {c.d_ffn, d}});
    out.push_back({b + "ffn.0.bias", {c.d_ffn}});
    out.push_back({b + "ffn.3.weight", {d, c.d_ffn}});
    out.push_back({b + "ffn.3.bias", {d}});
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    out.push_back({"value_heads." + std::to_string(l) + ".weight", {1, d}});
    out.push_back({"value_heads." + std::to_string(l) + ".bias", {1}});
  }
  out.push_back({"norm_f.weight", {d}});
  if (!c.tie_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, d}});
  return out;
}

namespace {

template <typename Count>
Count sum_of_shapes(const ModelConfig& cfg) {
  Count total = 0;
  for (const auto& [name, shape] : parameter_shapes(cfg)) {
    Count n = 1;
    for (int64_t s : shape) n *= static_cast<Count>(s);
    total += n;
  }
  return total;
}

}  // namespace

int64_t analytic_parameter_count(const ModelConfig& cfg) { return sum_of_shapes<int64_t>(cfg); }

double approximate_parameter_count(const ModelConfig& cfg) { return sum_of_shapes<double>(cfg); }

}  // namespace crsm::model
