#include "config/memory_plan.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/zero_policy.h"

#include "model/parameter_count.h"

namespace crsm {
namespace {

// The keys above their defaults that make the plan large: each one set back to its
// default would at least halve it. Largest effect first, as "d_state = 16777216
// (default 16)". Keys are read and set through the config's own table.
std::string keys_that_make_it_large(const RunConfig& config, MemoryUse use, int world, int64_t micro_batch) {
  static const char* const kSizeKeys[] = {"vocab_size", "d_model", "d_state", "d_ffn",      "num_layers",
                                          "expand",     "d_conv",  "dt_rank", "batch_size", "seq_len"};
  const double planned = planned_bytes_per_rank(config, use, world, micro_batch);
  const nlohmann::json values = to_json(config), defaults = to_json(RunConfig{});
  std::vector<std::pair<double, std::string>> effects;
  for (const char* key : kSizeKeys) {
    // dt_rank "auto" follows d_model: only a number set above the default counts.
    if (!values[key].is_number_integer()) continue;
    const int64_t value = values[key].get<int64_t>();
    if (defaults[key].is_number_integer() && value <= defaults[key].get<int64_t>()) continue;
    RunConfig reset = config;
    set_config_value(reset, key, defaults[key], "defaults");
    const int64_t micro = std::string(key) == "batch_size"
                              ? std::max<int64_t>(1, micro_batch * reset.train.batch_size / value)
                              : micro_batch;
    const double ratio = planned / planned_bytes_per_rank(reset, use, world, micro);
    if (ratio >= 2)
      effects.emplace_back(ratio, std::string(key) + " = " + std::to_string(value) + " (default " +
                                      (defaults[key].is_string() ? defaults[key].get<std::string>()
                                                                 : std::to_string(defaults[key].get<int64_t>())) +
                                      ")");
  }
  std::stable_sort(effects.begin(), effects.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string text;
  for (size_t i = 0; i < effects.size(); ++i)
    text += (i == 0 ? "" : i + 1 == effects.size() ? " and " : ", ") + effects[i].second;
  return text;
}

// ZeRO-3: the three largest units gathered at once (as dist::planned_memory counts
// them), from the config: the embedding, the LM head (unless tied) and the blocks.
double gathered_units(const model::ModelConfig& m, double params) {
  const double embedding = static_cast<double>(m.vocab_size) * static_cast<double>(m.d_model);
  const double head = m.tie_embeddings ? 0.0 : embedding;
  const double block = std::max(0.0, params - embedding - head) / std::max<double>(1, static_cast<double>(m.num_layers));
  std::vector<double> units = {embedding, head};
  units.insert(units.end(), static_cast<size_t>(std::min<int64_t>(3, m.num_layers)), block);
  units.resize(std::max<size_t>(3, units.size()), 0.0);
  std::sort(units.rbegin(), units.rend());
  return units[0] + units[1] + units[2];
}

}  // namespace

double planned_bytes_per_rank(const RunConfig& config, MemoryUse use, int world_size, int64_t micro_batch) {
  constexpr double kFloat = 4;
  const double params = model::approximate_parameter_count(config.model);
  if (use == MemoryUse::kInference) return params * kFloat;
  const double w = std::max(1, world_size);
  const auto policy = dist::ZeroPolicy::for_stage(static_cast<int>(config.zero_stage));  // the config key
  const double grads = policy.sharded_gradients() ? params / w : params;
  const double held = policy.sharded_parameters() ? params / w + gathered_units(config.model, params) : params;
  const double adam = 2 * (policy.sharded_optimizer() ? params / w : params);
  const double logits = static_cast<double>(micro_batch) * static_cast<double>(config.train.seq_len) *
                        static_cast<double>(config.model.vocab_size);
  return (held + grads + adam + logits) * kFloat;
}

double machine_memory_bytes() {
  double bytes = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  // A container's limit (cgroup v2, then v1) is what the allocator will actually meet.
  for (const char* limit : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(limit);
    double value = 0;
    if (in >> value && value > 0) bytes = std::min(bytes, value);
  }
  return bytes;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, bytes >= 100 || u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

void check_fits_in_memory(const RunConfig& config, MemoryUse use, int world_size, int ranks_on_node,
                          int64_t micro_batch, const std::string& source) {
  const double need = planned_bytes_per_rank(config, use, world_size, micro_batch);
  const double have = machine_memory_bytes();
  if (need * std::max(1, ranks_on_node) <= have) return;
  const std::string what = use == MemoryUse::kTraining
                               ? "training needs at least " + format_bytes(need) +
                                     " per rank (weights, gradients, AdamW state and one micro-batch's logits)"
                               : "the model needs at least " + format_bytes(need) + " for its weights";
  const std::string ranks = ranks_on_node > 1 ? " for its " + std::to_string(ranks_on_node) + " ranks" : "";
  const std::string keys = keys_that_make_it_large(config, use, world_size, micro_batch);
  throw UsageError(source + ": " + what + ", more than this machine's " + format_bytes(have) + ranks +
                   (keys.empty() ? "" : "; it is large because of " + keys));
}

void check_dynamics_fits_in_memory(const model::DynamicsConfig& cfg, int ranks_on_node, const std::string& source) {
  // Weights, gradients and AdamW's two moments, float32: the dynamics trains replicated.
  const double need = 4 * 4 * model::approximate_parameter_count(cfg);
  const double have = machine_memory_bytes();
  if (need * std::max(1, ranks_on_node) <= have) return;
  throw UsageError(source + ": training the " + model::to_string(cfg.arch) + " dynamics model (hidden " +
                   std::to_string(cfg.resolved_hidden()) + ", d_model " + std::to_string(cfg.d_model) + ") needs at least " +
                   format_bytes(need) + " per rank (weights, gradients and AdamW state), more than this machine's " +
                   format_bytes(have) + (ranks_on_node > 1 ? " for its " + std::to_string(ranks_on_node) + " ranks" : ""));
}

}  // namespace crsm
