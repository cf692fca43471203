#include "train/trainable.h"

namespace crsm::train {

bool is_value_head(const std::string& name) { return name.rfind("value_heads.", 0) == 0; }

TrainableParameters trainable_parameters(model::Backbone& model, bool value_heads) {
  TrainableParameters out;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) {
    if (is_value_head(p.key()) && !value_heads) {
      p.value().set_requires_grad(false);
      continue;
    }
    out.params.emplace_back(p.key(), p.value());
    out.decay.push_back(decays(p.key(), p.value().dim()));
    out.units.push_back(model::parameter_unit(model->config(), p.key()));
  }
  return out;
}

TrainableParameters value_head_parameters(model::Backbone& model) {
  TrainableParameters out;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) {
    if (!is_value_head(p.key())) {
      p.value().set_requires_grad(false);
      continue;
    }
    out.params.emplace_back(p.key(), p.value());
    out.decay.push_back(decays(p.key(), p.value().dim()));
    out.units.push_back(model::parameter_unit(model->config(), p.key()));
  }
  return out;
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
