#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "config/run_config.h"
#include "data/batch_sampler.h"
#include "data/tokenizer.h"
#include "model/backbone.h"
#include "train/adamw.h"

namespace crsm::train {

// Where a training run stands: enough, with the model and optimizer tensors, to carry
// on exactly as if it had never stopped.
struct TrainState {
  int64_t step = 0;
  data::SamplerPosition sampler;
  bool value_loss = false;  // stage 4 (true) or stage 1 (false)
};

// Writes one checkpoint under root (model.safetensors, optimizer.rank00000.safetensors
// with the CPU RNG state, the tokenizer, manifest.json) and returns its directory.
std::string save_train_checkpoint(const std::string& root, const TrainState& state,
                                  model::Backbone& model, const AdamW& optimizer,
                                  const data::Tokenizer& tokenizer,
                                  const nlohmann::json& config, int keep_last);

// Builds the model a checkpoint describes (its manifest's config) and loads its weights.
model::Backbone load_checkpoint_model(const std::string& dir, RunConfig* config = nullptr);

// Copies a checkpoint's weights into the model (strict: names and shapes must match).
void load_checkpoint_weights(const std::string& dir, model::Backbone& model);

// Restores optimizer state and the CPU RNG, and returns the recorded state.
TrainState load_train_state(const std::string& dir, AdamW& optimizer);

}  // namespace crsm::train
