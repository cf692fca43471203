#include <torch/torch.h>

#include "data/batch_sampler.h"
#include "data/data_error.h"

namespace crsm::data {

at::Tensor gather_windows(const TokenSplit& split, const std::vector<int64_t>& starts,
                          int64_t seq_len) {
  if (seq_len < 1) throw DataError("gather_windows: seq_len must be >= 1, got " +
                                   std::to_string(seq_len));
  const int64_t width = seq_len + 1;
  at::Tensor out = torch::empty({static_cast<int64_t>(starts.size()), width}, torch::kLong);
  int64_t* p = out.data_ptr<int64_t>();
  for (size_t i = 0; i < starts.size(); ++i) split.read(starts[i], width, p + i * width);
  return out;
}

std::vector<int64_t> eval_window_starts(int64_t num_tokens, int64_t seq_len,
                                        int64_t max_windows) {
  if (seq_len < 1)
    throw DataError("evaluation: seq_len must be >= 1, got " + std::to_string(seq_len));
  int64_t n = num_tokens > seq_len ? (num_tokens - 1) / seq_len : 0;
  if (n == 0)
    throw DataError("evaluation: a split of " + std::to_string(num_tokens) +
                    " tokens holds no window of seq_len " + std::to_string(seq_len) +
                    " (a window needs seq_len + 1 = " + std::to_string(seq_len + 1) + " tokens)");
  if (max_windows > 0) n = std::min(n, max_windows);
  std::vector<int64_t> starts(n);
  for (int64_t i = 0; i < n; ++i) starts[i] = i * seq_len;
  return starts;
}

}  // namespace crsm::data
