#pragma once

// A Communicator that passes every call to another and counts the bytes this rank sends
// for them, by the ring algorithms NCCL and Open MPI use for large buffers: an
// all-reduce sends 2 (W-1)/W of its buffer, a reduce-scatter or an all-gather (W-1)/W,
// a broadcast's root the buffer (W > 1). What a transport actually puts on the wire can
// differ (a tree, shared memory); the count says what the training step asked for,
// which is what the analytic volume of a ZeRO stage predicts (zero_policy.h).

#include <memory>

#include "dist/communicator.h"

namespace crsm::dist {

class CountingCommunicator final : public Communicator {
 public:
  explicit CountingCommunicator(Communicator& inner) : inner_(inner) {}

  double bytes_sent() const { return sent_; }
  void reset() { sent_ = 0; }

  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  std::string backend() const override { return inner_.backend(); }
  at::Device device() const override { return inner_.device(); }
  WorkPtr all_reduce(at::Tensor tensor, ReduceOp op) override;
  WorkPtr reduce_scatter(at::Tensor input, at::Tensor output) override;
  WorkPtr all_gather(at::Tensor buffer) override;
  WorkPtr broadcast(at::Tensor tensor, int root) override;
  void barrier() override { inner_.barrier(); }

 private:
  double part(const at::Tensor& t) const;  // (W-1)/W of the tensor's bytes

  Communicator& inner_;
  double sent_ = 0;
};

}  // namespace crsm::dist
