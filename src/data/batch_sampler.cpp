#include "data/batch_sampler.h"

#include <algorithm>
#include <numeric>

#include "data/data_error.h"
#include "data/portable_random.h"

namespace crsm::data {
namespace {

// Windows of seq_len + 1 tokens on the grid shift, shift + seq_len, ... within num_tokens.
int64_t windows_on_grid(int64_t num_tokens, int64_t seq_len, int64_t shift) {
  return (num_tokens - 1 - shift) / seq_len;
}

}  // namespace

BatchSampler::BatchSampler(int64_t num_tokens, int64_t seq_len, int64_t global_batch,
                           uint64_t seed, int rank, int world)
    : num_tokens_(num_tokens), seq_len_(seq_len), global_batch_(global_batch), seed_(seed),
      rank_(rank), world_(world) {
  if (seq_len < 1) throw DataError("sampler: seq_len must be >= 1, got " + std::to_string(seq_len));
  if (global_batch < 1)
    throw DataError("sampler: the global batch size must be >= 1, got " +
                    std::to_string(global_batch));
  if (world < 1 || rank < 0 || rank >= world)
    throw DataError("sampler: rank " + std::to_string(rank) + " is not in a world of " +
                    std::to_string(world));
  if (global_batch % world != 0)
    throw DataError("sampler: the global batch size " + std::to_string(global_batch) +
                    " is not divisible by the world size " + std::to_string(world));
  if (num_tokens < seq_len + 1)
    throw DataError("sampler: a split of " + std::to_string(num_tokens) +
                    " tokens holds no window of seq_len " + std::to_string(seq_len) +
                    " (a window needs seq_len + 1 = " + std::to_string(seq_len + 1) + " tokens)");
  // Every shift must leave at least one window on its grid.
  max_shift_ = std::min(seq_len, num_tokens - seq_len);
  const int64_t windows = windows_on_grid(num_tokens, seq_len, max_shift_ - 1);
  if (windows < global_batch)
    throw DataError("sampler: a split of " + std::to_string(num_tokens) + " tokens holds only " +
                    std::to_string(windows) + " windows of seq_len " + std::to_string(seq_len) +
                    ", fewer than one global batch of " + std::to_string(global_batch));
  batches_per_epoch_ = windows / global_batch;
}

std::vector<int64_t> BatchSampler::next() {
  plan_epoch();
  const int64_t first = position_.batch * global_batch_;
  const int64_t begin = rank_ * global_batch_ / world_, end = (rank_ + 1) * global_batch_ / world_;
  std::vector<int64_t> starts;
  starts.reserve(end - begin);
  for (int64_t row = begin; row < end; ++row)
    starts.push_back(shift_ + order_[first + row] * seq_len_);
  if (++position_.batch == batches_per_epoch_) position_ = {position_.epoch + 1, 0};
  return starts;
}

void BatchSampler::set_position(const SamplerPosition& p) {
  if (p.epoch < 0 || p.batch < 0 || p.batch >= batches_per_epoch_)
    throw DataError("sampler: cannot resume at epoch " + std::to_string(p.epoch) + ", batch " +
                    std::to_string(p.batch) + ": an epoch has " +
                    std::to_string(batches_per_epoch_) + " batches");
  position_ = p;
}

void BatchSampler::plan_epoch() {
  if (planned_epoch_ == position_.epoch) return;
  std::mt19937_64 rng(stream_seed(seed_, static_cast<uint64_t>(position_.epoch)));
  shift_ = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(max_shift_)));
  order_.resize(windows_on_grid(num_tokens_, seq_len_, shift_));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  shuffle(order_, rng);
  planned_epoch_ = position_.epoch;
}

}  // namespace crsm::data
