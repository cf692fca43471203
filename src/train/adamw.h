#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "checkpoint/training_checkpoint.h"
#include "model/tensor_file.h"

namespace crsm::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// AdamW with decoupled weight decay, the same update as torch.optim.AdamW, over slots:
// pieces of parameters (a whole parameter, or the part of it a rank owns under ZeRO
// sharding). Written out rather than taken from LibTorch so its state is plain named
// tensors per piece, saved bit for bit and re-partitioned when a run resumes at another
// world size.
class AdamW : public checkpoint::OptimizerState {
 public:
  struct Slot {
    std::string param;   // the parameter's name
    int64_t offset = 0;  // first element of the piece within the flattened parameter
    at::Tensor value;    // the piece: a view the update writes through
    bool decay = true;   // weight decay applies (matrices; not norms, biases, A_log, D)
  };

  // A saved piece of optimizer state, as read back from any rank's file.
  struct SavedPiece {
    std::string param;
    int64_t offset = 0;
    at::Tensor exp_avg, exp_avg_sq;  // 1-D, same length
  };

  AdamW(std::vector<Slot> slots, AdamWOptions options);

  // One update with learning rate lr; grads[i] is the gradient of slot i (same shape).
  void step(double lr, const std::vector<at::Tensor>& grads);

  int64_t steps_taken() const { return steps_; }
  const std::vector<Slot>& slots() const { return slots_; }

  // "<param>@<offset>.exp_avg" and ".exp_avg_sq" for every slot, and "step".
  model::NamedTensors state() const override;
  // Parses state() back into pieces; TensorFileError naming a malformed entry.
  static std::vector<SavedPiece> parse_state(const model::NamedTensors& state,
                                             const std::string& source, int64_t* step);
  // Fills every slot from pieces saved under any partition of the same parameters.
  // TensorFileError naming the parameter when some element of a slot is not covered.
  void load_state(const std::vector<SavedPiece>& pieces, int64_t step, const std::string& source);

  // checkpoint::OptimizerState: the slots as pieces; state() above; the saved files' pieces
  // parsed and loaded (TensorFileError when none of them holds any state).
  std::vector<Piece> pieces() const override;
  void load_state(const std::vector<SavedFile>& files, const std::string& dir) override;

  int64_t state_bytes() const;

 private:
  std::vector<Slot> slots_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

// Whether weight decay applies to the parameter of this name and rank.
bool decays(const std::string& name, int64_t dim);

}  // namespace crsm::train
