#include "checkpoint/dynamics_file.h"

#include <torch/torch.h>

#include <map>

#include "base/error.h"
#include "model/tensor_file.h"

namespace crsm::checkpoint {
namespace {

constexpr const char* kMeanName = "stats.delta_mean";
constexpr const char* kVarianceName = "stats.delta_variance";

}  // namespace

void save_dynamics(const std::string& path, const SavedDynamics& saved) {
  const auto& cfg = saved.model->config();
  auto tensors = model::module_tensors(*saved.model);
  tensors.emplace_back(kMeanName, saved.moments.mean);
  tensors.emplace_back(kVarianceName, saved.moments.variance);
  model::save_tensor_file(path, tensors,
                          {{"format", "crsm-dynamics"},
                           {"dynamics_arch", model::to_string(cfg.arch)},
                           {"dynamics_hidden", std::to_string(cfg.resolved_hidden())},
                           {"num_layers", std::to_string(cfg.num_layers)},
                           {"d_model", std::to_string(cfg.d_model)},
                           {"backbone_sha256", saved.backbone_sha256}});
}

SavedDynamics load_dynamics(const std::string& path) {
  std::map<std::string, std::string> meta;
  auto tensors = model::load_tensor_file(path, &meta);
  const auto field = [&](const std::string& key) {
    const auto it = meta.find(key);
    if (it == meta.end())
      throw model::TensorFileError(path + ": not a dynamics model (its metadata lacks \"" + key + "\")");
    return it->second;
  };
  const auto number = [&](const std::string& key) {
    const std::string text = field(key);
    try {
      size_t used = 0;
      const long long v = std::stoll(text, &used);
      if (used == text.size() && v > 0 && v <= (int64_t{1} << 24)) return static_cast<int64_t>(v);
    } catch (const std::exception&) {
    }
    throw model::TensorFileError(path + ": metadata \"" + key + "\" must be a positive integer, got \"" + text + "\"");
  };
  if (field("format") != "crsm-dynamics")
    throw model::TensorFileError(path + ": metadata \"format\" is \"" + field("format") + "\", expected \"crsm-dynamics\"");
  model::DynamicsConfig cfg;
  try {
    cfg.arch = model::parse_dynamics_arch(field("dynamics_arch"));
  } catch (const UsageError& e) {
    throw model::TensorFileError(path + ": metadata \"dynamics_arch\": " + e.what());
  }
  cfg.hidden = number("dynamics_hidden");
  cfg.num_layers = number("num_layers");
  cfg.d_model = number("d_model");
  SavedDynamics saved;
  const auto take = [&](const char* name, std::vector<int64_t> shape) {
    for (auto it = tensors.begin(); it != tensors.end(); ++it)
      if (it->first == name) {
        if (it->second.sizes() != at::IntArrayRef(shape) || it->second.scalar_type() != at::kFloat)
          throw model::TensorFileError(path + ": tensor " + name + " must be float32 of the metadata's shape");
        auto t = it->second;
        tensors.erase(it);
        return t;
      }
    throw model::TensorFileError(path + ": not a dynamics model (it lacks the tensor " + std::string(name) + ")");
  };
  saved.moments.mean = take(kMeanName, {cfg.num_layers, cfg.d_model});
  saved.moments.variance = take(kVarianceName, {cfg.num_layers});
  saved.model = model::LatentDynamics(cfg);
  model::load_module_tensors(*saved.model, tensors, path);
  saved.backbone_sha256 = field("backbone_sha256");
  return saved;
}

}  // namespace crsm::checkpoint
