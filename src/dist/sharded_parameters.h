#pragma once

// ZeRO-3 parameter placement (SPEC §6): a rank keeps only its chunk of every bucket of
// the flat layout, the shard, which its optimizer updates. A unit's full parameters
// (one block, the embedding, ...) exist only while it is gathered: forward gathers a
// unit just before it runs and releases it after; backward gathers it again and
// releases it once its gradients have been taken for reduction.
//
// The model's parameters are views of one buffer per unit whose storage is allocated
// when the unit is gathered and freed (resized to nothing) when it is released. Autograd
// keeps the parameters it saved in forward; they are views of that same storage, so
// backward reads the values gathered again into it. A released parameter must not be
// read.
//
// With prefetch, gathering unit u also launches the gather of the unit that runs next
// (u + 1 in forward, u - 1 in backward), which then overlaps u's computation. Every rank
// gathers the same units in the same order: forward and backward run the same graph.
// The shard may change (the optimizer's update) only while no unit is gathered: a unit
// gathered before would keep the old values.

#include <ATen/core/Tensor.h>

#include <vector>

#include "dist/communicator.h"
#include "dist/flat_layout.h"

namespace crsm::dist {

class ShardedParameters {
 public:
  // `params`: the model's parameters in layout order (their values are broadcast from
  // rank 0). They become views of their unit's buffer, released; one unit is copied at a
  // time, so the start holds the model and one unit more.
  ShardedParameters(const FlatLayout& layout, std::vector<at::Tensor>& params, Communicator& comm, bool prefetch);
  ~ShardedParameters();
  ShardedParameters(const ShardedParameters&) = delete;
  ShardedParameters& operator=(const ShardedParameters&) = delete;

  // The values of a segment this rank owns (a view of the shard the optimizer updates).
  at::Tensor owned(const Segment& segment);

  // Forward is about to run unit u / has finished with it; backward is about to run it.
  void enter_forward(int unit);
  void leave_forward(int unit);
  void enter_backward(int unit);
  // Gathers a unit without prefetching its neighbour: for a unit whose parameters another
  // borrows (tied embeddings), released with it or once its gradients are taken.
  void gather(int unit);
  // Every gradient in bucket b has been taken for reduction this micro-batch; once all
  // of a unit's buckets have, its parameters are no longer needed. (Whether the bucket's
  // reduction has been launched does not matter: a bucket waiting for an earlier one,
  // say of parameters that got no gradient, must not keep later units gathered.)
  void gradients_taken(int bucket);
  // Releases every unit: at the end of backward, and before the shard changes.
  void release_all();

  // The shard, and the most gathered units' bytes held at once since construction.
  int64_t shard_bytes() const;
  int64_t peak_gathered_bytes() const { return peak_gathered_; }
  // Seconds spent blocked waiting for gathers to finish since construction: what
  // prefetching did not hide.
  double gather_wait_seconds() const { return waited_; }

 private:
  struct Unit;
  void launch(int unit);
  void release(int unit);
  bool has(int unit) const;

  const FlatLayout& layout_;
  Communicator& comm_;
  bool prefetch_;
  at::Tensor shard_;  // chunk `rank` of every bucket, in bucket order
  std::vector<Unit> units_;
  std::vector<int> unit_of_bucket_;
  std::vector<int> taken_;  // per unit: buckets whose gradients were taken this micro-batch
  int64_t gathered_ = 0, peak_gathered_ = 0;
  double waited_ = 0;
};

}  // namespace crsm::dist
