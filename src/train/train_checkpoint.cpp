#include "train/train_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>
#include <mutex>

#include "dist/checkpoint_store.h"
#include "model/tensor_file.h"

namespace crsm::train {
namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.rank00000.safetensors";
constexpr const char* kRngKey = "rng.cpu";

at::Tensor cpu_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const at::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace

std::string save_train_checkpoint(const std::string& root, const TrainState& state,
                                  model::Backbone& model, const AdamW& optimizer,
                                  const data::Tokenizer& tokenizer,
                                  const nlohmann::json& config, int keep_last) {
  const std::string tmp = dist::begin_checkpoint(root, state.step);
  const auto path = [&](const char* name) { return (std::filesystem::path(tmp) / name).string(); };
  model::save_tensor_file(path(kModelFile), model::module_tensors(*model));
  auto opt_state = optimizer.state();
  opt_state.emplace_back(kRngKey, cpu_rng_state());
  model::save_tensor_file(path(kOptimizerFile), opt_state);
  tokenizer.save(tmp);
  nlohmann::json manifest = {
      {"step", state.step},
      {"epoch", state.sampler.epoch},
      {"world_size", 1},
      {"zero_stage", 0},
      {"stage", state.value_loss ? "finetune" : "backbone"},
      {"value_loss", state.value_loss},
      {"sampler", {{"epoch", state.sampler.epoch}, {"batch", state.sampler.batch}}},
      {"rng", {{"cpu", std::string("in ") + kOptimizerFile + " as " + kRngKey}}},
      {"config", config},
  };
  return dist::commit_checkpoint(root, tmp, manifest, keep_last);
}

model::Backbone load_checkpoint_model(const std::string& dir, RunConfig* config) {
  const auto manifest = dist::read_manifest(dir);
  const RunConfig parsed = parse_run_config(manifest.at("config"), dir + "/manifest.json config");
  model::Backbone model(parsed.model);
  load_checkpoint_weights(dir, model);
  if (config) *config = parsed;
  return model;
}

void load_checkpoint_weights(const std::string& dir, model::Backbone& model) {
  const auto path = (std::filesystem::path(dir) / kModelFile).string();
  model::load_module_tensors(*model, model::load_tensor_file(path), path);
}

TrainState load_train_state(const std::string& dir, AdamW& optimizer) {
  const auto manifest = dist::read_manifest(dir);
  const auto path = (std::filesystem::path(dir) / kOptimizerFile).string();
  auto tensors = model::load_tensor_file(path);
  at::Tensor rng;
  for (auto it = tensors.begin(); it != tensors.end(); ++it)
    if (it->first == kRngKey) {
      rng = it->second;
      tensors.erase(it);
      break;
    }
  if (!rng.defined()) throw model::TensorFileError(path + ": missing tensor " + kRngKey);
  optimizer.load_state(tensors, path);
  set_cpu_rng_state(rng);
  TrainState state;
  state.step = manifest.at("step").get<int64_t>();
  state.sampler.epoch = manifest.at("sampler").at("epoch").get<int64_t>();
  state.sampler.batch = manifest.at("sampler").at("batch").get<int64_t>();
  state.value_loss = manifest.at("value_loss").get<bool>();
  return state;
}

}  // namespace crsm::train
