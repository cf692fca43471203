#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model/model_config.h"

namespace crsm {

// A bad configuration: the message names the source and the offending key.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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
};

struct SearchConfig {
  double c_puct = 1.0;
  int64_t n_simulations = 50;
};

struct RunConfig {
  model::ModelConfig model;
  TrainConfig train;
  DynamicsConfig dynamics;
  SearchConfig search;
  int64_t seed = 42;
  std::string device = "cpu";
  int64_t zero_stage = 0;  // SPEC §6: 0 replicated, 1 optimizer state sharded, 2 gradients too
};

// Parses a config object. Every key is optional (defaults above); an unknown key,
// a value of the wrong type or an impossible value throws ConfigError naming it.
RunConfig parse_run_config(const nlohmann::json& j, const std::string& source);

// Reads and parses a JSON file; a missing file or malformed JSON throws ConfigError.
RunConfig load_run_config(const std::string& path);

nlohmann::json to_json(const RunConfig& c);

}  // namespace crsm
