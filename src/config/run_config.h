#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/error.h"
#include "config/constraint.h"
#include "model/model_config.h"

namespace crsm {

// A bad configuration: the message names the source and the offending key.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Keys of the seed's config file besides the model shape (seed USAGE.md).
struct TrainConfig {
  int64_t backbone_epochs = 10;
  int64_t finetune_epochs = 5;
  int64_t batch_size = 32;  // global batch: split across ranks
  int64_t seq_len = 512;
  double lr = 1e-3;
  double finetune_lr = 5e-4;
};

struct DynamicsConfig {
  int64_t samples = 50000;
  int64_t epochs = 10;
  double lr = 1e-3;
  std::string arch = "shared";  // SPEC §4: shared | per_layer | mlp
  int64_t hidden = 0;           // 0: "auto", the architecture's default width
  int64_t batch_size = 256;     // transitions per optimizer step (global)
};

// Search and deliberative generation (SPEC §9).
struct SearchConfig {
  double c_puct = 1.0;
  std::string root_choice = "visits";  // visits | value | halving: how a search picks its answer
  bool normalize_q = false;            // PUCT's Q rescaled by the tree's lowest and highest
  bool reuse_subtree = false;          // a search starts from the previous one's chosen subtree
  int64_t n_simulations = 50;
  int64_t top_k = 16;            // children expanded per node, the most likely by policy
  int64_t leaf_batch = 16;       // leaves evaluated per batched network call (1: sequential)
  double injection_rate = 0.1;   // alpha_l = injection_rate * sigmoid(conf_l) * delta_decay^lag
  double delta_decay = 0.9;
  int64_t max_lag = 4;           // planned results further ahead than this are dropped
  double temperature = 0.8;      // sampling where no planned token applies (0: greedy)
  double top_p = 1.0;
};

// What the pipeline trains on and evaluates (SPEC §10). Empty: the bundled data. A
// relative path in a config file is taken relative to that file's directory.
struct InputsConfig {
  std::string data;   // a text file or a prepared directory
  std::string tasks;  // an ARC task directory, a .json task or a .jsonl file of tasks
  // Tasks with answers that stage 4 samples rollouts on when value_target is outcome.
  std::string rollout_tasks;
};

struct RunConfig {
  model::ModelConfig model;
  TrainConfig train;
  DynamicsConfig dynamics;
  SearchConfig search;
  InputsConfig inputs;
  int64_t seed = 42;
  std::string device = "cpu";
  int64_t zero_stage = 0;  // SPEC §6: 0 replicated, 1 optimizer state sharded, 2 gradients too, 3 parameters too
};

// The constraint of a config key, for the command-line flags that set the same value
// (--batch-size is batch_size): both are checked alike. std::out_of_range for a name
// that is not a key.
const Constraint& config_constraint(const std::string& key);

// Every key, in the order of to_json.
std::vector<std::string> config_key_names();

// Sets one key from a JSON value, checked against its constraint; ConfigError naming
// `source` and the key otherwise. Cross-key rules are check_run_config's.
void set_config_value(RunConfig& c, const std::string& key, const nlohmann::json& value,
                      const std::string& source);

// The rules that involve several keys (dt_rank <= expand * d_model); ConfigError naming
// `source` and the key.
void check_run_config(const RunConfig& c, const std::string& source);

// Parses a config object. Every key is optional (defaults above); an unknown key,
// a value of the wrong type or an impossible value throws ConfigError naming it.
RunConfig parse_run_config(const nlohmann::json& j, const std::string& source);

// Reads and parses a JSON file; a missing file, a directory or malformed JSON throws
// ConfigError naming the path. Relative `data` and `tasks` become paths relative to the
// file's directory.
RunConfig load_run_config(const std::string& path);

nlohmann::json to_json(const RunConfig& c);

}  // namespace crsm
