#pragma once

// One small collective interface with several backends (PyTorch c10d's habit):
//   local  world size 1, no launcher: every collective is the identity;
//   mpi    CPU tensors over MPI (Open MPI's shared memory and TCP/IB transports);
//   nccl   CUDA tensors over NCCL, one communication stream (built when CUDA and NCCL
//          are found at configure time).
// Collectives may run asynchronously: each returns a Work to wait on, and the tensors
// passed in must stay untouched until then. Every rank must issue the same collectives
// in the same order. Failures throw CommError naming the rank, the operation and the
// backend's message.

#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"
#include "dist/runtime.h"

namespace crsm::dist {

class CommError : public Error {
 public:
  using Error::Error;
};

// A collective that did not complete within the communicator's timeout: a peer stopped
// or hung. Unlike other CommErrors it says nothing about this rank's input.
class CommTimeout : public CommError {
 public:
  using CommError::CommError;
};

// The transport itself failed (an MPI call, NCCL, CUDA): not the input's fault, and not a
// timeout; the last checkpoint is intact.
class CommFailure : public CommError {
 public:
  using CommError::CommError;
};

// How a communicator is torn down. Destroying it cleanly waits for the collectives it
// has queued, which blocks forever when a peer never joins them: after a failure, or
// while an exception unwinds past it, it is aborted instead (as PyTorch's NCCL wrapper
// does), so the process gets to print its error and exit.
enum class Teardown { kDestroy, kAbort };
Teardown choose_teardown(bool failure_seen, int uncaught_exceptions);

enum class ReduceOp { kSum, kMax };

class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the collective has finished (on a GPU: until the compute stream is
  // ordered after it).
  virtual void wait() = 0;
  // Drives progress without blocking; true once finished.
  virtual bool poll() = 0;
};

using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;
  // Where this backend's tensors live (CPU, or the rank's GPU for NCCL).
  virtual at::Device device() const = 0;

  // In place: every rank ends with the elementwise reduction of all ranks' `tensor`.
  virtual WorkPtr all_reduce(at::Tensor tensor, ReduceOp op) = 0;
  // `input` holds world_size equal chunks; this rank's `output` (one chunk) receives the
  // sum over ranks of chunk `rank`.
  virtual WorkPtr reduce_scatter(at::Tensor input, at::Tensor output) = 0;
  // In place: `buffer` holds world_size equal chunks; chunk `rank` is this rank's input
  // and every chunk ends holding the input of the rank of the same index.
  virtual WorkPtr all_gather(at::Tensor buffer) = 0;
  virtual WorkPtr broadcast(at::Tensor tensor, int root) = 0;
  virtual void barrier() = 0;
};

// This rank's device for a --device value: "cpu", "cuda:N", or "cuda" meaning the GPU of
// its local rank (wrapped onto the GPUs it can see, for schedulers that show each rank
// only its own). UsageError naming the flag when CUDA is asked for and absent.
c10::Device rank_device(const std::string& name, const Runtime& rt);

// How long one collective may take before the rank throws CommTimeout: a peer that is
// stopped or stuck (not dead: mpirun ends the job for a dead one) would otherwise hold
// every other rank forever. Whatever one rank does while the others wait must fit in it:
// the longest checkpoint save, rank 0 preparing a text corpus or verifying a resume.
// Zero waits forever. The MPI backend checks while it waits; the NCCL backend's watchdog
// thread aborts the communicator and its next call throws.
constexpr std::chrono::seconds kDefaultCollectiveTimeout{1800};
constexpr std::chrono::seconds kMaxCollectiveTimeout{30 * 24 * 3600};

// The communicator for this process: local without a launcher; NCCL when `device` is a
// CUDA device and NCCL was built in; MPI otherwise. Both backends end a collective that
// has not finished within `timeout` with CommTimeout (0: wait forever).
std::unique_ptr<Communicator> make_communicator(const Runtime& rt, const c10::Device& device,
                                                std::chrono::seconds timeout = kDefaultCollectiveTimeout);

std::unique_ptr<Communicator> make_mpi_communicator(std::chrono::seconds timeout = kDefaultCollectiveTimeout);
std::unique_ptr<Communicator> make_local_communicator();
// The NCCL library and CUDA runtime this build links ("not built" without NCCL).
std::string nccl_version();
std::string cuda_runtime_version();

// Throws CommError when this build has no NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(int device_index,
                                                     std::chrono::seconds timeout = kDefaultCollectiveTimeout);

// Size rules every backend enforces; CommError starting with `what` otherwise.
void check_reduce_scatter_sizes(const at::Tensor& input, const at::Tensor& output, int world,
                                const std::string& what);
// Returns the chunk each rank contributes.
int64_t check_all_gather_size(const at::Tensor& buffer, int world, const std::string& what);

// Conveniences over the interface.
void all_reduce_now(Communicator& comm, at::Tensor tensor, ReduceOp op = ReduceOp::kSum);
double all_reduce_scalar(Communicator& comm, double value, ReduceOp op = ReduceOp::kSum);

// The preemption signal that reached any rank (0 when none). Collective.
int preemption_signal_on_any_rank(Communicator& comm);

// A safe point of a command of several ranks: when a preemption signal reached any of
// them, every rank throws the same Preempted ("<command>: preempted by SIGUSR1 <state>",
// as stop_if_preempted), so the job ends together with one message. Collective.
void stop_if_preempted_on_any_rank(Communicator& comm, const std::string& command, const std::string& state);
// Rank `root`'s string on every rank.
std::string broadcast_string(Communicator& comm, const std::string& value, int root = 0);

// Every rank's string, in rank order, on every rank.
std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& value);

// Runs `work` on rank 0 alone and gives every rank its result. When it throws, rank 0
// rethrows its exception and every other rank throws one with the same message (an
// Error when rank 0's was one of ours, Preempted when it was), so the job fails together with one message
// instead of rank 0 alone while the others wait for it.
std::string run_on_root(Communicator& comm, const std::function<std::string()>& work);

}  // namespace crsm::dist
