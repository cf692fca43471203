#include "train/thread_shares.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "model/cpu_kernels.h"

namespace crsm::train {
namespace {

std::vector<at::Tensor> detached_reports(const std::vector<at::Tensor>& losses, double weight) {
  std::vector<at::Tensor> out;
  for (size_t i = 1; i < losses.size(); ++i) out.push_back(losses[i].detach() * weight);
  return out;
}

std::vector<at::Tensor> whole(const LossFunction& losses, const std::vector<at::Tensor>& micro_batch,
                              double scale, Precision precision, StepTimer& timer) {
  std::vector<at::Tensor> l;
  {
    const auto forward = timer.time(Phase::kForward);
    // Forward only: backward runs outside autocast, as autograd expects.
    AutocastScope autocast(precision, micro_batch.at(0).device().type());
    l = losses(micro_batch);
  }
  {
    const auto backward = timer.time(Phase::kBackward);
    (l.at(0) * scale).backward();
  }
  return detached_reports(l, 1.0);
}

struct Share {
  std::vector<at::Tensor> grads;    // per parameter; undefined where it got none
  std::vector<at::Tensor> reports;  // weighted by the share's rows
  double forward_seconds = 0;
};

// Runs on a thread of the pool, inside its parallel region: every operation in here
// runs on this thread alone. Grad mode and autocast are thread-local, so both are set
// here rather than inherited from the caller.
Share run_share(const LossFunction& losses, const std::vector<at::Tensor>& rows,
                const std::vector<at::Tensor>& params, double scale, double weight, Precision precision) {
  torch::AutoGradMode grad_mode(true);
  StepTimer timer;  // this thread's: the CPU's, never synchronized
  std::vector<at::Tensor> l;
  {
    const auto forward = timer.time(Phase::kForward);
    AutocastScope autocast(precision, rows.at(0).device().type());
    l = losses(rows);
  }
  Share share;
  {
    const auto backward = timer.time(Phase::kBackward);
    share.grads = torch::autograd::grad({l.at(0) * (scale * weight)}, params, {}, /*retain_graph=*/false,
                                        /*create_graph=*/false, /*allow_unused=*/true);
  }
  share.reports = detached_reports(l, weight);
  share.forward_seconds = timer.take()[static_cast<size_t>(Phase::kForward)];
  return share;
}

// Sums the shares in share order and accumulates the sums into the parameters. A
// gradient autograd hands out may be one tensor for two parameters (an addition's
// backward passes one on to both), so only a sum made here is added to in place.
void accumulate(std::vector<Share>& shares, const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> roots, sums;
  for (size_t k = 0; k < params.size(); ++k) {
    at::Tensor sum;
    int terms = 0;
    for (auto& s : shares) {
      if (!s.grads[k].defined()) continue;
      sum = terms == 0 ? s.grads[k] : terms == 1 ? sum + s.grads[k] : sum.add_(s.grads[k]);
      ++terms;
      s.grads[k] = at::Tensor();
    }
    if (!sum.defined()) continue;
    roots.push_back(params[k]);
    sums.push_back(sum);
  }
  if (!roots.empty()) torch::autograd::backward(roots, sums);
}

// Nothing to say in the log: one thread, or a GPU.
constexpr const char* kNoThreadsToShare = "one thread or not the CPU";

// Why the rows are not shared out (null: they are), checked in this order.
const char* per_op_reason(const ThreadUseInputs& in) {
  if (!in.cpu || in.threads < 2) return kNoThreadsToShare;
  if (!in.allowed) return "--no-batch-split";
  if (in.rows < in.threads) return "fewer rows per micro-batch than threads";
  if (in.gathers_units) return "zero stage 3 gathers parameters unit by unit";
  if (in.draws_random_numbers) return "dropout draws random numbers";
  return nullptr;
}

}  // namespace

ThreadUse choose_thread_use(const ThreadUseInputs& in) {
  return per_op_reason(in) ? ThreadUse::kPerOp : ThreadUse::kPerShare;
}

std::string describe_thread_use(const ThreadUseInputs& in) {
  const char* why = per_op_reason(in);
  if (why == kNoThreadsToShare) return "";
  const std::string threads = "threads: " + std::to_string(in.threads) + " per rank, ";
  if (!why) return threads + "each running forward and backward of its own share of every micro-batch";
  return threads + "each operation spread over them (" + why + ")";
}

std::vector<at::Tensor> forward_backward(ThreadUse use, const LossFunction& losses,
                                         const std::vector<at::Tensor>& micro_batch,
                                         const std::vector<at::Tensor>& params, double scale,
                                         Precision precision, StepTimer* timer) {
  StepTimer untimed;
  StepTimer& phases = timer ? *timer : untimed;
  if (use == ThreadUse::kPerOp) return whole(losses, micro_batch, scale, precision, phases);
  const auto started = std::chrono::steady_clock::now();
  const int64_t rows = micro_batch.at(0).size(0);
  // Keyed by first row, so the shares are summed in row order whichever thread ran them.
  std::vector<std::optional<Share>> by_first_row(static_cast<size_t>(rows));
  model::split_over_threads(rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<at::Tensor> share_rows;
    for (const auto& t : micro_batch) share_rows.push_back(t.narrow(0, begin, end - begin));
    const double weight = static_cast<double>(end - begin) / static_cast<double>(rows);
    by_first_row[static_cast<size_t>(begin)] = run_share(losses, share_rows, params, scale, weight, precision);
  });
  std::vector<Share> shares;
  for (auto& share : by_first_row)
    if (share) shares.push_back(std::move(*share));
  accumulate(shares, params);
  double forward = 0;
  for (const auto& share : shares) forward = std::max(forward, share.forward_seconds);
  phases.add(Phase::kForward, forward);
  phases.add(Phase::kBackward,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() - forward);
  std::vector<at::Tensor> reports = shares[0].reports;
  for (size_t s = 1; s < shares.size(); ++s)
    for (size_t i = 0; i < reports.size(); ++i) reports[i] = reports[i] + shares[s].reports[i];
  return reports;
}

}  // namespace crsm::train
