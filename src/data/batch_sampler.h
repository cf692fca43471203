#pragma once

// Deterministic data order for training and evaluation. The order depends only on
// (seed, epoch) and is computed without the standard library's distributions, whose
// results differ between implementations, so a run resumed from a checkpoint's
// SamplerPosition sees exactly the batches it would have seen, on any platform.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "data/token_shards.h"

namespace crsm::data {

struct SamplerPosition {
  int64_t epoch = 0;
  int64_t batch = 0;  // batch within the epoch
};

class BatchSampler {
 public:
  // Windows of seq_len + 1 tokens (input and shifted target) over a split of num_tokens
  // tokens. Each epoch lays a grid of non-overlapping window starts, offset by a shift in
  // [0, seq_len) drawn from (seed, epoch) (smaller when the split is under two windows
  // long), and visits it in an order permuted by (seed, epoch). A global batch is
  // global_batch consecutive windows of that order; rank r of `world` takes rows
  // [r * global_batch / world, (r + 1) * global_batch / world). Every epoch has the same
  // number of batches (that of the sparsest grid); an incomplete last batch is dropped.
  // DataError if the split holds fewer than one window or fewer windows than one global
  // batch (naming seq_len and the token count), or world does not divide global_batch.
  BatchSampler(int64_t num_tokens, int64_t seq_len, int64_t global_batch, uint64_t seed,
               int rank = 0, int world = 1);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t rows() const { return global_batch_ / world_; }  // this rank's windows per batch

  // This rank's window starts of the current global batch; then advances, rolling over
  // into the next epoch.
  std::vector<int64_t> next();

  SamplerPosition position() const { return position_; }
  // DataError if epoch < 0 or batch is not in [0, batches_per_epoch()).
  void set_position(const SamplerPosition& p);

 private:
  // Draws the shift and window order of position_.epoch unless they are current.
  void plan_epoch();

  int64_t num_tokens_, seq_len_, global_batch_;
  uint64_t seed_;
  int rank_, world_;
  int64_t max_shift_ = 0;  // shifts are drawn from [0, max_shift_)
  int64_t batches_per_epoch_ = 0;
  SamplerPosition position_;
  int64_t planned_epoch_ = -1;
  int64_t shift_ = 0;
  std::vector<int64_t> order_;  // window indexes on this epoch's grid
};

// A [rows, seq_len + 1] int64 CPU tensor holding the windows that begin at `starts`.
at::Tensor gather_windows(const TokenSplit& split, const std::vector<int64_t>& starts,
                          int64_t seq_len);

// Non-overlapping evaluation windows starting at 0, seq_len, 2 * seq_len, ...: at most
// max_windows of them (all if max_windows <= 0). DataError if not even one fits.
std::vector<int64_t> eval_window_starts(int64_t num_tokens, int64_t seq_len,
                                        int64_t max_windows);

}  // namespace crsm::data
