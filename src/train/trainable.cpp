#include "train/trainable.h"

namespace crsm::train {

bool is_value_head(const std::string& name) { return name.rfind("value_heads.", 0) == 0; }

namespace {

// The parameters `trains` names, in registration order; the others are set to require no
// gradient.
template <typename Trains>
TrainableParameters parameters_where(model::Backbone& model, Trains trains) {
  TrainableParameters out;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) {
    if (!trains(p.key())) {
      p.value().set_requires_grad(false);
      continue;
    }
    out.params.emplace_back(p.key(), p.value());
    out.decay.push_back(decays(p.key(), p.value().dim()));
    out.units.push_back(model::parameter_unit(model->config(), p.key()));
  }
  return out;
}

}  // namespace

TrainableParameters trainable_parameters(model::Backbone& model, bool value_heads) {
  return parameters_where(model, [&](const std::string& name) { return value_heads || !is_value_head(name); });
}

TrainableParameters value_head_parameters(model::Backbone& model) {
  return parameters_where(model, [](const std::string& name) { return is_value_head(name); });
}

std::vector<AdamW::Slot> optimizer_slots(const dist::DataParallel& dp) {
  std::vector<AdamW::Slot> slots;
  for (size_t i = 0; i < dp.owned_segments().size(); ++i) {
    const auto& seg = dp.owned_segments()[i];
    const auto& info = dp.layout().params()[static_cast<size_t>(seg.param)].info;
    slots.push_back({info.name, seg.param_offset, dp.owned_params()[i], info.decay});
  }
  return slots;
}

}  // namespace crsm::train
