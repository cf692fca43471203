// Outcome values' data (SPEC §3): a batch of rollouts trains exactly the positions from
// the state after the prompt to the state after the answer, and the global batches are
// the same at any number of ranks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "train/outcome_objective.h"

namespace {

using crsm::train::OutcomeBatches;
using crsm::train::OutcomeSequences;

// Row i: a prompt of 2 + i % 3 tokens, then an answer of i % 4 tokens; tokens i + 1.
OutcomeSequences toy_rollouts(int64_t n) {
  OutcomeSequences s{torch::zeros({n, 8}, torch::kLong), torch::empty({n}, torch::kLong), torch::empty({n}, torch::kLong),
                     torch::empty({n}, torch::kFloat), torch::arange(n, torch::kLong)};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t prompt = 2 + i % 3, answer = i % 4;
    s.tokens[i].narrow(0, 0, prompt + answer).fill_(i + 1);
    s.first[i] = prompt - 1;
    s.last[i] = prompt + answer - 1;
    s.label[i] = static_cast<float>(i % 2);
  }
  return s;
}

TEST(OutcomeBatch, MasksTheStatesFromAfterThePromptToAfterTheAnswer) {
  const auto rows = toy_rollouts(6);
  const auto batch = crsm::train::outcome_batch(rows, {5, 2}, torch::kCPU);
  // Row 5: prompt 4, answer 1 -> positions 3..4; row 2: prompt 4, answer 2 -> 3..5.
  ASSERT_EQ(batch[0].size(1), 6) << "cut to the batch's longest sequence";
  EXPECT_TRUE(batch[1][0].equal(torch::tensor({0, 0, 0, 1, 1, 0}, torch::kFloat)));
  EXPECT_TRUE(batch[1][1].equal(torch::tensor({0, 0, 0, 1, 1, 1}, torch::kFloat)));
  EXPECT_TRUE(batch[2].equal(torch::tensor({1.0f, 0.0f})));
  EXPECT_EQ(batch[0][0][0].item<int64_t>(), 6);
}

TEST(OutcomeBatches, TheGlobalBatchesAreTheSameOnOneAndTwoRanksAcrossEpochs) {
  const auto rows = toy_rollouts(10);
  OutcomeBatches one(rows, 4, 7, 0, 1, torch::kCPU);
  OutcomeBatches first(rows, 4, 7, 0, 2, torch::kCPU), second(rows, 4, 7, 1, 2, torch::kCPU);
  ASSERT_EQ(one.batches_per_epoch(), 2);
  std::vector<int64_t> seen;
  for (int step = 0; step < 5; ++step) {  // into the third epoch, whose order is drawn anew
    const auto whole = one.next();
    const auto a = first.next(), b = second.next();
    EXPECT_TRUE(whole[2].equal(torch::cat({a[2], b[2]}))) << "step " << step;
    for (int64_t r = 0; r < 4; ++r) seen.push_back(whole[0][r][0].item<int64_t>());
  }
  EXPECT_EQ(one.position().epoch, 2);
  // An epoch visits distinct rows.
  std::sort(seen.begin(), seen.begin() + 8);
  EXPECT_EQ(std::unique(seen.begin(), seen.begin() + 8), seen.begin() + 8);
}

}  // namespace
