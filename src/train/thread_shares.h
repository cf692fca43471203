#pragma once

// How a rank's CPU threads work on one micro-batch (SPEC §6).
//
// Per op: one forward and one backward over the whole micro-batch, each operation
// spreading its work over LibTorch's threads. Between two operations every thread but
// one waits, and a step of a small model is hundreds of short operations.
//
// Per share: the micro-batch's rows are cut into one share per thread, and each thread
// runs forward and backward of its share from start to finish, its operations on that
// thread alone, as ranks do with their rows. The shares' gradients are summed in share
// order, so the result does not depend on which thread finishes first, and are then
// accumulated into the parameters by one backward from the parameters themselves: the
// gradient hooks DataParallel placed fire as they do for any backward.
//
// What it costs: until they are summed, each share's gradients take as much memory as
// the parameters (one copy per thread, beside DataParallel's own gradients). With ranks,
// the reduction starts once the shares are done instead of overlapping their backward;
// on CPUs, where a rank's own cores move MPI's bytes, the overlap gained nothing
// measurable (bench/README.md).
//
// Sharing out the rows gives the gradients of the whole micro-batch only if each share
// can run on its own thread unobserved, so per share is chosen only where:
//  - the device is the CPU and the rank has two threads or more, and at least as many
//    rows per micro-batch (else threads would idle);
//  - the parameters are not gathered unit by unit (ZeRO-3): a gather is a collective
//    that every rank must issue in the same order, once per use;
//  - the losses draw no random numbers (dropout): the shares would take them from one
//    generator in whatever order the threads reach it.

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "train/mixed_precision.h"
#include "train/step_timer.h"

namespace crsm::train {

enum class ThreadUse { kPerOp, kPerShare };

struct ThreadUseInputs {
  bool allowed = true;  // false: --no-batch-split
  bool cpu = true;
  int threads = 1;
  int64_t rows = 1;  // per micro-batch, on this rank
  bool gathers_units = false;
  bool draws_random_numbers = false;
};

ThreadUse choose_thread_use(const ThreadUseInputs& in);

// One line for the run's log: how the threads share the work, and why per op; empty
// with one thread or off the CPU.
std::string describe_thread_use(const ThreadUseInputs& in);

// The losses of some rows: [0] is what backward runs on, the others are reported. Each is
// a mean over the rows it is given, so shares combine weighted by their rows.
using LossFunction = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>& rows)>;

// Forward under `precision`, then backward of losses[0] * scale into the .grad of
// `params` (those that get a gradient). Per share, the rows are cut into as many shares
// as there are threads (or rows, if fewer). Returns losses[1..], detached: over the whole
// micro-batch, whichever way it ran. `timer` gets the forward and backward time; per
// share, forward is the slowest share's forward and backward the rest of the call.
std::vector<at::Tensor> forward_backward(ThreadUse use, const LossFunction& losses,
                                         const std::vector<at::Tensor>& micro_batch,
                                         const std::vector<at::Tensor>& params, double scale,
                                         Precision precision, StepTimer* timer = nullptr);

}  // namespace crsm::train
