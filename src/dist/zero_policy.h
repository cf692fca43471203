#pragma once

namespace crsm::dist {

// The decisions a ZeRO stage makes (SPEC §6), taken once when a run starts: how
// gradients are reduced, and what a rank's optimizer owns.
//   stage 0  all-reduce, owns everything;   stage 1  all-reduce, owns its chunks;
//   stage 2  reduce-scatter, owns its chunks.
struct ZeroPolicy {
  enum class Reduction { kAllReduce, kReduceScatter } reduction = Reduction::kAllReduce;
  enum class Ownership { kEverything, kShard } ownership = Ownership::kEverything;

  // std::invalid_argument naming --zero-stage for a stage without a policy.
  static ZeroPolicy for_stage(int stage);

  bool sharded_optimizer() const { return ownership == Ownership::kShard; }
  bool sharded_gradients() const { return reduction == Reduction::kReduceScatter; }
};

}  // namespace crsm::dist
