#include "model/block_checkpoint.h"

#include <torch/torch.h>

#include <cstdint>
#include <optional>

#include "model/autocast_state.h"
#include "model/random_state.h"

namespace crsm::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rewinds the generator to `then` for its lifetime, then puts back where it had got to:
// the recomputation draws the forward's numbers and training's stream goes on unchanged.
class ReplayRandom {
 public:
  ReplayRandom(const at::Device& device, const at::Tensor& then) : device_(device), now_(random_state(device)) {
    set_random_state(device_, then);
  }
  ~ReplayRandom() { set_random_state(device_, now_); }
  ReplayRandom(const ReplayRandom&) = delete;
  ReplayRandom& operator=(const ReplayRandom&) = delete;

 private:
  at::Device device_;
  at::Tensor now_;
};

// Inputs: x, the block (not a tensor: its address), and the block's parameters, so that
// their gradients leave backward through this node like any other.
struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, BlockImpl* block, bool replay_random,
                               at::TensorList params) {
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(block);
    ctx->saved_data["replay_random"] = replay_random;
    const auto autocast = AutocastState::current();
    ctx->saved_data["autocast"] = std::vector<int64_t>{autocast.cpu, autocast.cuda, static_cast<int64_t>(autocast.cpu_dtype),
                                                       static_cast<int64_t>(autocast.cuda_dtype)};
    if (replay_random) ctx->saved_data["random"] = random_state(x.device());
    ctx->save_for_backward({x});
    (void)params;
    torch::NoGradGuard no_grad;
    return {block->forward(x)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* block = reinterpret_cast<BlockImpl*>(ctx->saved_data["block"].toInt());
    const auto a = ctx->saved_data["autocast"].toIntVector();
    const AutocastAs autocast({a[0] != 0, a[1] != 0, static_cast<c10::ScalarType>(a[2]), static_cast<c10::ScalarType>(a[3])});
    const auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    std::optional<ReplayRandom> replay;
    if (ctx->saved_data["replay_random"].toBool()) replay.emplace(x.device(), ctx->saved_data["random"].toTensor());
    torch::AutoGradMode recording(true);
    const auto out = block->forward(x);
    variable_list inputs{x};
    for (const auto& p : block->parameters()) inputs.push_back(p);
    auto g = torch::autograd::grad({out}, inputs, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    variable_list result{g[0], at::Tensor(), at::Tensor()};
    result.insert(result.end(), g.begin() + 1, g.end());
    return result;
  }
};

}  // namespace

at::Tensor checkpointed_forward(Block& block, const at::Tensor& x, bool replay_random) {
  const auto params = block->parameters();
  return CheckpointFunction::apply(x, block.get(), replay_random, at::TensorList(params))[0];
}

}  // namespace crsm::model
