#pragma once

// Data parallelism over a Communicator, with ZeRO stages 0-3 (SPEC §6).
//
// The trainable parameters are moved into one flat buffer (FlatLayout) and the model's
// tensors become views of it. Gradients are averaged in buckets launched from autograd
// hooks as soon as a bucket's last gradient has been accumulated, so communication
// overlaps the rest of backward. A stage is three decisions, taken once (zero_policy.h):
//   how gradients are reduced  all-reduced into a full flat buffer, or reduce-scattered
//                              so that a rank keeps only its chunk of every bucket (a
//                              bucket's full gradient exists only while it is reduced);
//   what the optimizer owns    every parameter, or the rank's chunk of every bucket;
//   where parameters live      replicated (all-gathered after the update when the
//                              optimizer owns chunks), or sharded: the rank keeps its
//                              chunks and gathers a unit at a time while forward and
//                              backward use it (sharded_parameters.h; the caller
//                              connects the model's unit hooks to parameters()).
// A training step is: zero_grad(); for each micro-batch begin_micro_batch(last),
// backward, end_micro_batch(); then update owned_params() from owned_grads() (after
// clipping with grad_norm()/scale_grads()); then gather_params().

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/communicator.h"
#include "dist/flat_layout.h"
#include "dist/sharded_parameters.h"
#include "dist/zero_policy.h"

namespace torch::autograd {
struct Node;
}

namespace crsm::dist {

struct DataParallelOptions {
  ZeroPolicy zero = ZeroPolicy::for_stage(0);
  int64_t bucket_bytes = 4 << 20;
  // Gradients wait for backward to finish and are then reduced bucket by bucket:
  // the baseline the overlap is measured against (bench only).
  bool reduce_after_backward = false;
  // Stage 3: launch the next unit's gather while the current one computes.
  bool prefetch = true;
};

// Bytes this rank holds for training state.
struct MemoryUsage {
  int64_t params = 0, grads = 0, optimizer = 0;
};

class DataParallel {
 public:
  // Stage 2: reductions in flight at once (each holds a full bucket of gradient).
  static constexpr size_t kMaxInFlight = 2;

  // `params`: the trainable parameters in registration order, with whether weight decay
  // applies and (stage 3 only) their gathering unit. They must be on the communicator's
  // device. Rank 0's values are broadcast.
  DataParallel(const std::vector<std::pair<std::string, at::Tensor>>& params,
               const std::vector<bool>& decay, Communicator& comm, DataParallelOptions options,
               const std::vector<int>& units = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  const FlatLayout& layout() const { return layout_; }
  const ZeroPolicy& policy() const { return policy_; }
  // Stage 3: where the parameters live between uses; null at stages 0-2.
  ShardedParameters* sharded_parameters() { return sharded_.get(); }

  // The pieces of parameters this rank updates, their value views and averaged
  // gradients (valid after the last micro-batch's end_micro_batch()).
  const std::vector<Segment>& owned_segments() const { return segments_; }
  const std::vector<at::Tensor>& owned_params() const { return owned_params_; }
  const std::vector<at::Tensor>& owned_grads() const { return owned_grads_; }

  void zero_grad();
  // Call before each micro-batch's backward; `last` marks the micro-batch whose
  // backward completes the step's gradients (only then do stages 0/1 communicate;
  // stage 2 reduces every micro-batch into its shard).
  void begin_micro_batch(bool last);
  // Call after each micro-batch's backward: waits until its buckets are reduced. After
  // the last one owned_grads() hold the average over ranks.
  void end_micro_batch();
  // L2 norm of the full averaged gradient (summed across shards where sharded).
  double grad_norm();
  void scale_grads(double factor);
  // Stages 1/2: every rank receives the parameters the others updated.
  void gather_params();

  // Parameters, gradients (peak, including buckets in flight) held by this rank.
  MemoryUsage memory() const;
  // What one step of `micro_batches` should send for parameters and gradients, by the
  // policy's collectives over this layout (zero_policy.h).
  double analytic_bytes_per_step(int micro_batches) const;

  // Called by the autograd hook once a parameter's gradient is accumulated.
  void on_gradient_ready(int param);

  // How gradients are reduced and kept: one implementation per ZeroPolicy::Reduction
  // (data_parallel.cpp).
  class Gradients;

 private:
  struct BucketState;
  void launch_ready_in_order();
  void retire(size_t bucket);
  void poll_in_flight();

  Communicator& comm_;
  DataParallelOptions options_;
  ZeroPolicy policy_;
  FlatLayout layout_;
  int64_t element_bytes_;  // of the parameters
  at::Tensor flat_params_;                    // replicated placement
  std::unique_ptr<ShardedParameters> sharded_;  // sharded placement
  std::vector<at::Tensor> model_params_;  // in flat (layout) order
  std::unique_ptr<Gradients> gradients_;
  std::vector<Segment> segments_;
  std::vector<at::Tensor> owned_params_, owned_grads_;
  std::vector<std::unique_ptr<BucketState>> buckets_;
  size_t next_launch_ = 0;  // buckets [0, next_launch_) are launched this micro-batch
  size_t retired_ = 0;      // buckets [0, retired_) are reduced and retired
  bool syncing_ = false;
  // Gradient accumulators of the parameters (kept alive: autograd holds them weakly)
  // and the keys of our hooks on them.
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
};

// The layout DataParallel uses under `zero` for `params` (their units set): units cut
// buckets only where parameters are gathered by unit (stage 3).
FlatLayout zero_layout(std::vector<ParamInfo> params, int world_size, int64_t bucket_elements, const ZeroPolicy& zero);

// What a rank of a run with this layout would hold, without building anything: the
// plan the README's memory table reports (AdamW: two fp32 moments per owned element).
// At stage 3 the layout must carry the units (zero_layout), and the plan counts the
// three largest gathered at once: the one running, the one prefetched, and one more at
// the start of backward (the value heads before the LM head) or borrowed (tied
// embeddings keep the embedding gathered through backward).
MemoryUsage planned_memory(const FlatLayout& layout, const ZeroPolicy& zero, int64_t element_bytes);

}  // namespace crsm::dist
