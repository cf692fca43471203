#include "config/run_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "base/file_read.h"

namespace crsm {
namespace {

using nlohmann::json;

// Bounds on sizes: far beyond any machine, and small enough that products of a few of
// them stay within int64 (the memory plan multiplies them).
constexpr int64_t kMaxDim = int64_t{1} << 24;
constexpr int64_t kMaxVocab = (int64_t{1} << 31) - 1;  // token ids are int32
constexpr int64_t kMaxEpochs = int64_t{1} << 30;

// "cpu", "cuda", or "cuda:N" with N of at most four digits.
bool is_device_name(const std::string& name) {
  if (name == "cpu" || name == "cuda") return true;
  const std::string prefix = "cuda:";
  const std::string index = name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : "";
  return !index.empty() && index.size() <= 4 &&
         std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One config key: its constraint and where its value lives in a RunConfig.
struct Key {
  std::string name;
  Constraint constraint;
  std::function<void(RunConfig&, const json&)> set;
  std::function<json(const RunConfig&)> get;
};

// A key stored as it is written. `field` returns the member of a RunConfig (const or
// not) that holds it.
template <typename T, typename Field>
Key plain(const char* name, Constraint constraint, Field field) {
  return {name, std::move(constraint), [field](RunConfig& c, const json& v) { field(c) = v.get<T>(); },
          [field](const RunConfig& c) { return json(field(c)); }};
}

#define CRSM_FIELD(member) [](auto& c) -> auto& { return c.member; }

const std::vector<Key>& keys() {
  static const std::vector<Key> table = {
      plain<int64_t>("vocab_size", Constraint::integer(2, kMaxVocab), CRSM_FIELD(model.vocab_size)),
      plain<int64_t>("d_model", Constraint::integer(1, kMaxDim), CRSM_FIELD(model.d_model)),
      plain<int64_t>("d_state", Constraint::integer(1, kMaxDim), CRSM_FIELD(model.d_state)),
      // 0: blocks without the feed-forward branch (the Mamba-1 block, exportable to HF).
      plain<int64_t>("d_ffn", Constraint::integer(0, kMaxDim), CRSM_FIELD(model.d_ffn)),
      plain<int64_t>("num_layers", Constraint::integer(1, 4096), CRSM_FIELD(model.num_layers)),
      plain<double>("dropout", Constraint::number(0.0, 1.0, false, /*hi_open=*/true), CRSM_FIELD(model.dropout)),
      plain<int64_t>("expand", Constraint::integer(1, 64), CRSM_FIELD(model.expand)),
      plain<int64_t>("d_conv", Constraint::integer(1, 1024), CRSM_FIELD(model.d_conv)),
      // 0 in ModelConfig stands for "auto": ceil(d_model / 16).
      {"dt_rank", Constraint::integer(1, kMaxDim).or_word("auto"),
       [](RunConfig& c, const json& v) { c.model.dt_rank = v.is_string() ? 0 : v.get<int64_t>(); },
       [](const RunConfig& c) { return c.model.dt_rank > 0 ? json(c.model.dt_rank) : json("auto"); }},
      plain<bool>("tie_embeddings", Constraint::boolean(), CRSM_FIELD(model.tie_embeddings)),
      plain<std::string>("norm", Constraint::word({"rmsnorm"}), CRSM_FIELD(model.norm)),
      {"value_target", Constraint::word({"next_token", "outcome"}),
       [](RunConfig& c, const json& v) {
         c.model.value_target = v.get<std::string>() == "outcome" ? model::ValueTarget::kOutcome
                                                                  : model::ValueTarget::kNextToken;
       },
       [](const RunConfig& c) { return json(c.model.value_target == model::ValueTarget::kOutcome ? "outcome" : "next_token"); }},
      plain<int64_t>("backbone_epochs", Constraint::integer(0, kMaxEpochs), CRSM_FIELD(train.backbone_epochs)),
      plain<int64_t>("finetune_epochs", Constraint::integer(0, kMaxEpochs), CRSM_FIELD(train.finetune_epochs)),
      plain<int64_t>("batch_size", Constraint::integer(1, kMaxDim), CRSM_FIELD(train.batch_size)),
      plain<int64_t>("seq_len", Constraint::integer(1, kMaxDim), CRSM_FIELD(train.seq_len)),
      plain<double>("lr", Constraint::number(0.0, INFINITY, /*lo_open=*/true), CRSM_FIELD(train.lr)),
      plain<double>("finetune_lr", Constraint::number(0.0, INFINITY, true), CRSM_FIELD(train.finetune_lr)),
      plain<int64_t>("dynamics_samples", Constraint::integer(1, int64_t{1} << 40), CRSM_FIELD(dynamics.samples)),
      plain<int64_t>("dynamics_epochs", Constraint::integer(0, kMaxEpochs), CRSM_FIELD(dynamics.epochs)),
      plain<double>("dynamics_lr", Constraint::number(0.0, INFINITY, true), CRSM_FIELD(dynamics.lr)),
      plain<std::string>("dynamics_arch", Constraint::word({"shared", "per_layer", "mlp"}), CRSM_FIELD(dynamics.arch)),
      {"dynamics_hidden", Constraint::integer(1, kMaxDim).or_word("auto"),
       [](RunConfig& c, const json& v) { c.dynamics.hidden = v.is_string() ? 0 : v.get<int64_t>(); },
       [](const RunConfig& c) { return c.dynamics.hidden > 0 ? json(c.dynamics.hidden) : json("auto"); }},
      plain<int64_t>("dynamics_batch_size", Constraint::integer(1, kMaxDim), CRSM_FIELD(dynamics.batch_size)),
      plain<double>("c_puct", Constraint::number(0.0, 1e6), CRSM_FIELD(search.c_puct)),
      plain<std::string>("root_choice", Constraint::word({"visits", "value", "halving"}), CRSM_FIELD(search.root_choice)),
      plain<bool>("normalize_q", Constraint::boolean(), CRSM_FIELD(search.normalize_q)),
      plain<bool>("reuse_subtree", Constraint::boolean(), CRSM_FIELD(search.reuse_subtree)),
      plain<int64_t>("n_simulations", Constraint::integer(1, kMaxDim), CRSM_FIELD(search.n_simulations)),
      plain<int64_t>("top_k", Constraint::integer(1, kMaxVocab), CRSM_FIELD(search.top_k)),
      plain<int64_t>("leaf_batch", Constraint::integer(1, 4096), CRSM_FIELD(search.leaf_batch)),
      plain<double>("injection_rate", Constraint::number(0.0, 1.0), CRSM_FIELD(search.injection_rate)),
      plain<double>("delta_decay", Constraint::number(0.0, 1.0), CRSM_FIELD(search.delta_decay)),
      plain<int64_t>("max_lag", Constraint::integer(0, 4096), CRSM_FIELD(search.max_lag)),
      plain<double>("temperature", Constraint::number(0.0, 1000.0), CRSM_FIELD(search.temperature)),
      plain<double>("top_p", Constraint::number(0.0, 1.0, /*lo_open=*/true), CRSM_FIELD(search.top_p)),
      plain<std::string>("data", Constraint::text(), CRSM_FIELD(inputs.data)),
      plain<std::string>("tasks", Constraint::text(), CRSM_FIELD(inputs.tasks)),
      plain<std::string>("rollout_tasks", Constraint::text(), CRSM_FIELD(inputs.rollout_tasks)),
      plain<int64_t>("seed", Constraint::integer(0), CRSM_FIELD(seed)),
      plain<std::string>("device", Constraint::satisfying(is_device_name, "\"cpu\", \"cuda\" or \"cuda:N\""),
                         CRSM_FIELD(device)),
      plain<int64_t>("zero_stage", Constraint::integer(0, 3), CRSM_FIELD(zero_stage)),
  };
  return table;
}

#undef CRSM_FIELD

const Key* find_key(const std::string& name) {
  for (const auto& k : keys())
    if (k.name == name) return &k;
  return nullptr;
}

[[noreturn]] void refuse(const std::string& source, const std::string& key, const std::string& expected,
                         const json& got) {
  throw ConfigError(source + ": key '" + key + "': expected " + expected + ", got " + got.dump());
}

}  // namespace

const Constraint& config_constraint(const std::string& key) {
  const Key* k = find_key(key);
  if (!k) throw std::out_of_range("no config key " + key);
  return k->constraint;
}

std::vector<std::string> config_key_names() {
  std::vector<std::string> names;
  for (const auto& k : keys()) names.push_back(k.name);
  return names;
}

void set_config_value(RunConfig& c, const std::string& key, const json& value, const std::string& source) {
  const Key* k = find_key(key);
  if (!k) {
    std::string known;
    for (const auto& name : config_key_names()) known += (known.empty() ? "" : ", ") + name;
    throw ConfigError(source + ": unknown key '" + key + "' (known keys: " + known + ")");
  }
  if (!k->constraint.allows(value)) refuse(source, key, k->constraint.expected(), value);
  k->set(c, value);
}

void check_run_config(const RunConfig& c, const std::string& source) {
  if (c.model.dt_rank > c.model.d_inner())
    refuse(source, "dt_rank", "at most expand*d_model = " + std::to_string(c.model.d_inner()),
           json(c.model.dt_rank));
}

RunConfig parse_run_config(const json& j, const std::string& source) {
  if (!j.is_object()) throw ConfigError(source + ": expected a JSON object at the top level");
  RunConfig c;
  for (const auto& item : j.items()) set_config_value(c, item.key(), item.value(), source);
  check_run_config(c, source);
  return c;
}

RunConfig load_run_config(const std::string& path) {
  json j;
  try {
    j = base::read_json_file(path);
  } catch (const FileError& e) {
    throw ConfigError(e.what());
  }
  RunConfig c = parse_run_config(j, path);
  const auto beside_file = [&](std::string& p) {
    if (!p.empty() && std::filesystem::path(p).is_relative())
      p = (std::filesystem::path(path).parent_path() / p).lexically_normal().string();
  };
  beside_file(c.inputs.data);
  beside_file(c.inputs.tasks);
  beside_file(c.inputs.rollout_tasks);
  return c;
}

json to_json(const RunConfig& c) {
  json j = json::object();
  for (const auto& k : keys()) j[k.name] = k.get(c);
  return j;
}

}  // namespace crsm
