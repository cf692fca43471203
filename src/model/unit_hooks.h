#pragma once

// How a model announces the groups of parameters ("units": the embedding, each block,
// the final norm with the LM head, the value heads) it is about to use, so that a caller
// keeping parameters elsewhere (ZeRO-3 gathers them from the ranks) can bring them in
// just in time and let them go after. Without hooks a model runs as it always has.
//
// A use names the unit that runs first, then any unit whose parameters it borrows (the
// LM head of tied embeddings reads the embedding's): a caller prefetches after the
// first only.

#include <ATen/core/Tensor.h>

#include <vector>

namespace crsm::model {

class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  // Forward is about to read these units' parameters / has finished with them.
  virtual void enter_forward(const std::vector<int>& units) = 0;
  virtual void leave_forward(const std::vector<int>& units) = 0;
  // Backward is about to run these units' operations (their outputs' gradients are
  // complete).
  virtual void enter_backward(const std::vector<int>& units) = 0;
};

// One use of units by forward: enters them when constructed, leaves them when destroyed.
// mark() passes the use's output through a node that enters the units in backward
// before any of their operations' gradients run; without hooks (or gradients) it is the
// output itself.
class UnitUse {
 public:
  UnitUse(UnitHooks* hooks, std::vector<int> units);
  ~UnitUse();
  UnitUse(const UnitUse&) = delete;
  UnitUse& operator=(const UnitUse&) = delete;
  at::Tensor mark(const at::Tensor& output) const;

 private:
  UnitHooks* hooks_;
  std::vector<int> units_;
};

}  // namespace crsm::model
