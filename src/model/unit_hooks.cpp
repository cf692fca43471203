#include "model/unit_hooks.h"

#include <torch/torch.h>

namespace crsm::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Identity; its backward, which runs before the backward of whatever produced its input,
// enters the units.
struct EnterInBackward : torch::autograd::Function<EnterInBackward> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, UnitHooks* hooks, std::vector<int64_t> units) {
    ctx->saved_data["hooks"] = reinterpret_cast<int64_t>(hooks);
    ctx->saved_data["units"] = std::move(units);
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* hooks = reinterpret_cast<UnitHooks*>(ctx->saved_data["hooks"].toInt());
    std::vector<int> units;
    for (int64_t u : ctx->saved_data["units"].toIntVector()) units.push_back(static_cast<int>(u));
    hooks->enter_backward(units);
    return {grads[0], at::Tensor(), at::Tensor()};
  }
};

}  // namespace

UnitUse::UnitUse(UnitHooks* hooks, std::vector<int> units) : hooks_(hooks), units_(std::move(units)) {
  if (hooks_) hooks_->enter_forward(units_);
}

UnitUse::~UnitUse() {
  if (hooks_) hooks_->leave_forward(units_);
}

at::Tensor UnitUse::mark(const at::Tensor& output) const {
  if (!hooks_ || !output.requires_grad()) return output;
  return EnterInBackward::apply(output, hooks_, std::vector<int64_t>(units_.begin(), units_.end()));
}

}  // namespace crsm::model
