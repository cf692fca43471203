#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "model/tensor_file.h"

namespace crsm::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// AdamW with decoupled weight decay, the same update as torch.optim.AdamW. Written out
// rather than taken from LibTorch so its state is plain named tensors: saved in
// checkpoints bit for bit, and (later) sharded across ranks.
class AdamW {
 public:
  struct Param {
    std::string name;
    at::Tensor tensor;
    bool decay;  // weight decay applies (matrices; not norms, biases, A_log, D)
  };

  AdamW(std::vector<Param> params, AdamWOptions options);

  // One update with learning rate lr from the parameters' .grad(); a parameter without a
  // gradient is left alone.
  void step(double lr);
  void zero_grad();

  int64_t steps_taken() const { return steps_; }

  // "<param>.exp_avg", "<param>.exp_avg_sq" for every parameter, and "step".
  model::NamedTensors state() const;
  // Strict counterpart of state(); TensorFileError naming a missing or mis-shaped entry.
  void load_state(const model::NamedTensors& state, const std::string& source);

  const std::vector<Param>& params() const { return params_; }

 private:
  std::vector<Param> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

// Parameters of a module in registration order, with the decay rule above.
std::vector<AdamW::Param> decay_groups(const model::NamedTensors& named_parameters);

}  // namespace crsm::train
