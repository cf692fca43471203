#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>
#include <set>
#include <thread>

#include "../model/test_helpers.h"
#include "model/backbone.h"
#include "train/lm_loss.h"
#include "train/thread_shares.h"

namespace {

using crsm::train::Precision;
using crsm::train::ThreadUse;
using crsm::train::ThreadUseInputs;

// The test binary may run with any thread count; these tests need two.
class ThreadShares : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_threads_ = at::get_num_threads();
    at::set_num_threads(2);
    torch::manual_seed(5);
    model_ = crsm::model::Backbone(crsm::testing::tiny_model_config());
    model_->train();
    for (const auto& p : model_->parameters()) params_.push_back(p);
  }
  void TearDown() override { at::set_num_threads(saved_threads_); }

  // Stage 4's losses: the total, then the reported LM and value losses.
  crsm::train::LossFunction lm_losses() {
    return [this](const std::vector<at::Tensor>& rows) -> std::vector<at::Tensor> {
      const auto parts = crsm::train::lm_loss(model_, rows[0], 1.0);
      return {parts.total, parts.lm, parts.value};
    };
  }

  // The gradients and reports of micro-batches run one after another into zeroed .grad.
  std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> run(ThreadUse use,
                                                                  const std::vector<at::Tensor>& micro_batches) {
    model_->zero_grad();
    std::vector<at::Tensor> reports;
    for (const auto& rows : micro_batches) {
      reports = crsm::train::forward_backward(use, lm_losses(), {rows}, params_,
                                              1.0 / static_cast<double>(micro_batches.size()), Precision::kFloat32);
    }
    std::vector<at::Tensor> grads;
    for (const auto& p : params_) grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    return {grads, reports};
  }

  crsm::model::Backbone model_{nullptr};
  std::vector<at::Tensor> params_;
  int saved_threads_ = 1;
};

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-30);
}

TEST_F(ThreadShares, SharesOfUnequalRowsGiveTheWholeMicroBatchsGradientsAndLosses) {
  // 5 rows over 2 threads: shares of 2 and 3, weighted by their rows. Two micro-batches
  // check that the second accumulates onto the first.
  const std::vector<at::Tensor> batches = {torch::randint(0, 50, {5, 17}, torch::kLong),
                                           torch::randint(0, 50, {5, 17}, torch::kLong)};
  const auto [whole, whole_reports] = run(ThreadUse::kPerOp, batches);
  const auto [shared, shared_reports] = run(ThreadUse::kPerShare, batches);
  ASSERT_EQ(whole.size(), shared.size());
  for (size_t k = 0; k < whole.size(); ++k) {
    ASSERT_EQ(whole[k].defined(), shared[k].defined()) << "parameter " << k;
    if (whole[k].defined()) EXPECT_LE(relative_difference(shared[k], whole[k]), 1e-5) << "parameter " << k;
  }
  ASSERT_EQ(shared_reports.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_NEAR(shared_reports[i].item<double>(), whole_reports[i].item<double>(),
                1e-6 * std::abs(whole_reports[i].item<double>()));
}

// Each share recomputes its blocks in its own backward, on its own thread.
TEST_F(ThreadShares, WithActivationCheckpointingTheyGiveTheSameGradients) {
  const std::vector<at::Tensor> batch = {torch::randint(0, 50, {4, 17}, torch::kLong)};
  const auto whole = run(ThreadUse::kPerOp, batch).first;
  model_->set_activation_checkpointing(true);
  const auto shared = run(ThreadUse::kPerShare, batch).first;
  for (size_t k = 0; k < whole.size(); ++k)
    if (whole[k].defined()) EXPECT_LE(relative_difference(shared[k], whole[k]), 1e-5) << "parameter " << k;
}

// Three shares: a sum taken in the order the threads finish would differ between runs.
TEST_F(ThreadShares, RunTwiceTheyGiveIdenticalGradients) {
  at::set_num_threads(3);
  const std::vector<at::Tensor> batch = {torch::randint(0, 50, {6, 17}, torch::kLong)};
  const auto first = run(ThreadUse::kPerShare, batch).first;
  const auto second = run(ThreadUse::kPerShare, batch).first;
  for (size_t k = 0; k < first.size(); ++k)
    if (first[k].defined()) EXPECT_TRUE(torch::equal(first[k], second[k])) << "parameter " << k;
}

// Built without OpenMP, at::parallel_for would run both shares on the calling thread.
TEST_F(ThreadShares, EachShareRunsOnAThreadOfItsOwnWithAutocastAndGradModeSet) {
  std::mutex mutex;
  std::set<std::thread::id> threads;
  int calls = 0, autocast_on = 0, grad_on = 0, single_threaded = 0;
  const auto inner = lm_losses();
  const crsm::train::LossFunction watched = [&](const std::vector<at::Tensor>& rows) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      threads.insert(std::this_thread::get_id());
      ++calls;
      autocast_on += at::autocast::is_cpu_enabled();
      grad_on += torch::GradMode::is_enabled();
      single_threaded += at::in_parallel_region();
    }
    return inner(rows);
  };
  torch::NoGradGuard caller_without_grad;  // the shares must not inherit it
  crsm::train::forward_backward(ThreadUse::kPerShare, watched, {torch::randint(0, 50, {4, 9}, torch::kLong)}, params_,
                                1.0, Precision::kBFloat16);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(threads.size(), 2u);
  EXPECT_EQ(autocast_on, 2);
  EXPECT_EQ(grad_on, 2);
  EXPECT_EQ(single_threaded, 2);
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  for (const auto& p : params_) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
  }
}

// An addition's backward hands one gradient tensor to both of its inputs: summing the
// shares into it in place would add one parameter's shares to the other's too.
TEST_F(ThreadShares, ParametersGivenOneGradientTensorKeepTheirOwnSums) {
  at::set_num_threads(3);
  auto a = torch::randn({4}).requires_grad_(true), b = torch::randn({4}).requires_grad_(true);
  const crsm::train::LossFunction loss = [&](const std::vector<at::Tensor>& rows) -> std::vector<at::Tensor> {
    return {((a + b) * rows[0]).sum(1).mean()};
  };
  const auto x = torch::randn({6, 4});
  crsm::train::forward_backward(ThreadUse::kPerShare, loss, {x}, {a, b}, 1.0, Precision::kFloat32);
  EXPECT_LE(relative_difference(a.grad(), x.mean(0)), 1e-6);
  EXPECT_LE(relative_difference(b.grad(), x.mean(0)), 1e-6);
}

TEST(ThreadUse, PerShareOnlyWhereTheSharesCannotDifferFromTheWholeAndNoThreadIdles) {
  const ThreadUseInputs base{true, true, 2, 2, false, false};
  EXPECT_EQ(crsm::train::choose_thread_use(base), ThreadUse::kPerShare);
  auto off = base;
  off.allowed = false;
  auto gpu = base;
  gpu.cpu = false;
  auto one = base;
  one.threads = 1;
  auto few_rows = base;
  few_rows.rows = 1;
  auto zero3 = base;
  zero3.gathers_units = true;
  auto dropout = base;
  dropout.draws_random_numbers = true;
  for (const auto& in : {off, gpu, one, few_rows, zero3, dropout})
    EXPECT_EQ(crsm::train::choose_thread_use(in), ThreadUse::kPerOp);
  using crsm::train::describe_thread_use;
  EXPECT_NE(describe_thread_use(base).find("each running forward and backward of its own share"), std::string::npos);
  EXPECT_NE(describe_thread_use(few_rows).find("fewer rows per micro-batch than threads"), std::string::npos);
  EXPECT_NE(describe_thread_use(zero3).find("zero stage 3"), std::string::npos);
  EXPECT_NE(describe_thread_use(dropout).find("dropout"), std::string::npos);
  EXPECT_NE(describe_thread_use(off).find("--no-batch-split"), std::string::npos);
  EXPECT_EQ(describe_thread_use(one), "");
  EXPECT_EQ(describe_thread_use(gpu), "");
}

}  // namespace
