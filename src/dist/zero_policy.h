#pragma once

namespace crsm::dist {

// The decisions a ZeRO stage makes (SPEC §6), taken once when a run starts: how
// gradients are reduced, what a rank's optimizer owns, and where parameters live.
//   stage 0  all-reduce, owns everything, replicated;
//   stage 1  all-reduce, owns its chunks, replicated (gathered after each update);
//   stage 2  reduce-scatter, owns its chunks, replicated (gathered after each update);
//   stage 3  reduce-scatter, owns its chunks, sharded (gathered a unit at a time while
//            forward and backward use it; never after the update).
// Chosen once, from the stage a run is given (--zero-stage, zero_stage), and passed as it
// is wherever a decision depends on it.
struct ZeroPolicy {
  int stage = 0;  // what it was chosen from, for messages and manifests
  enum class Reduction { kAllReduce, kReduceScatter } reduction = Reduction::kAllReduce;
  enum class Ownership { kEverything, kShard } ownership = Ownership::kEverything;
  enum class Placement { kReplicated, kSharded } placement = Placement::kReplicated;

  // std::invalid_argument naming --zero-stage for a stage without a policy.
  static ZeroPolicy for_stage(int stage);

  bool sharded_optimizer() const { return ownership == Ownership::kShard; }
  bool sharded_gradients() const { return reduction == Reduction::kReduceScatter; }
  bool sharded_parameters() const { return placement == Placement::kSharded; }
  // Whether every rank receives the others' updated chunks after each step.
  bool gathers_after_update() const { return sharded_optimizer() && !sharded_parameters(); }
};

// Bytes one rank sends in one step for the parameter traffic of a policy, by the usual
// ring algorithms (an all-reduce sends 2 (W-1)/W of its buffer; an all-gather or a
// reduce-scatter (W-1)/W): the analytic volume the measured count is compared with.
// `flat_bytes` is the flat parameter buffer; stage 2 and 3 reduce every micro-batch, and
// stage 3 gathers every unit twice per micro-batch (forward and backward).
double analytic_bytes_per_step(const ZeroPolicy& policy, double flat_bytes, int world, int micro_batches);

}  // namespace crsm::dist
