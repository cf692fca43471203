// The NCCL backend: CUDA tensors, one communicator per process (one GPU per rank), the
// NCCL unique id broadcast over MPI. Collectives run on a dedicated stream so they
// overlap with backward on the compute stream; events order the two streams.
//
// Failures: any NCCL or CUDA error, or a collective that outlives the timeout, marks the
// communicator failed; a failed one (or one destroyed while an exception unwinds) is
// aborted, never synchronised, so a rank whose peers will not join does not hang in its
// destructor. Deadlines are kept by a watchdog thread, as PyTorch's wrapper does, so that
// waiting never blocks the host (wait() only orders the compute stream): a collective
// past its deadline aborts the communicator, which lets NCCL's kernels and whatever the
// host is blocked on return, and the next call on the communicator throws CommTimeout, as
// the MPI backend does.
#include <ATen/ATen.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#ifdef CRSM_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "dist/communicator.h"
#include "dist/nccl_status.h"

namespace crsm::dist {
namespace {

using Clock = std::chrono::steady_clock;

// The stream LibTorch queues this device's work on. A CPU-only LibTorch never makes CUDA
// tensors, so there the legacy default stream is only a placeholder that keeps the
// backend compiling and linking.
cudaStream_t compute_stream(int device) {
#ifdef CRSM_TORCH_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return nullptr;
#endif
}

std::string cuda_text(cudaError_t e) { return cudaGetErrorString(e); }

// Makes `device` current for a scope: events and streams belong to the device current
// when they are made.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) cudaSetDevice(device);
    else previous_ = -1;
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// What the communicator and its pending works share: the NCCL communicator, whether a
// failure was seen, whether it has been aborted (then nothing may touch it again), and
// the collectives in flight that the watchdog holds to their deadlines.
struct NcclState {
  ncclComm_t comm = nullptr;
  int rank = 0;
  std::atomic<bool> failed{false};
  std::atomic<bool> aborted{false};

  ~NcclState() { stop_watchdog(); }

  void abort() {
    failed = true;
    if (!aborted.exchange(true)) ncclCommAbort(comm);
  }

  // NCCL's own words for the last error of this communicator, where it keeps them.
  std::string nccl_text(ncclResult_t r) const {
    std::string text = ncclGetErrorString(r);
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
    if (const char* last = aborted ? nullptr : ncclGetLastError(comm); last && *last) text += " (" + std::string(last) + ")";
#endif
    return text;
  }

  [[noreturn]] void fail(const std::string& what) {
    failed = true;
    throw CommFailure("rank " + std::to_string(rank) + ": " + what);
  }

  // Throws CommTimeout once the watchdog has seen a collective outlive its deadline.
  void check_timeout() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!timed_out_.empty()) throw CommTimeout("rank " + std::to_string(rank) + ": " + timed_out_);
  }

  void start_watchdog(int device, std::chrono::seconds timeout) {
    timeout_ = timeout;
    watchdog_ = std::thread([this, device] { watch(device); });
  }
  void stop_watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
  }

  // Holds `done` to the timeout from now until forget(); returns its key (0: no timeout).
  int64_t watch(cudaEvent_t done, const std::string& what) {
    if (timeout_.count() <= 0) return 0;
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_[++next_key_] = {done, Clock::now() + timeout_, what};
    return next_key_;
  }
  // Before `done` is destroyed.
  void forget(int64_t key) {
    if (key == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(key);
  }

 private:
  struct InFlight {
    cudaEvent_t done;
    Clock::time_point deadline;
    std::string what;
  };

  void watch(int device) {
    cudaSetDevice(device);
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(100));
      const auto now = Clock::now();
      for (auto it = in_flight_.begin(); it != in_flight_.end();) {
        if (event_state(cudaEventQuery(it->second.done)) != EventState::kPending) {
          it = in_flight_.erase(it);  // finished, or failed: wait() and poll() report that
        } else if (now >= it->second.deadline && timed_out_.empty()) {
          timed_out_ = it->second.what + ": not complete after " + std::to_string(timeout_.count()) +
                       " s (--collective-timeout): another rank is stopped, stuck or far behind; the NCCL "
                       "communicator was aborted";
          abort();
          in_flight_.clear();
          break;
        } else {
          ++it;
        }
      }
    }
  }

  std::chrono::seconds timeout_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<int64_t, InFlight> in_flight_;
  int64_t next_key_ = 0;
  std::string timed_out_;
  std::thread watchdog_;
};

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclState> state, cudaEvent_t done, cudaStream_t launched_from, int device,
           std::vector<at::Tensor> keep_alive, std::string what)
      : state_(std::move(state)), done_(done), launched_from_(launched_from), device_(device),
        keep_alive_(std::move(keep_alive)), what_(std::move(what)), watch_key_(state_->watch(done_, what_)) {}

  ~NcclWork() override {
    state_->forget(watch_key_);
    DeviceGuard guard(device_);
    // Buffers go back to the caching allocator only once the launching stream is ordered
    // after the collective that still reads or writes them. After an abort the event
    // will never complete: the buffers are kept instead.
    if (state_->aborted) new std::vector<at::Tensor>(std::move(keep_alive_));
    else if (!waited_) cudaStreamWaitEvent(launched_from_, done_, 0);
    cudaEventDestroy(done_);
  }

  void wait() override {
    if (waited_) return;
    DeviceGuard guard(device_);
    check_async();
    const cudaError_t e = cudaStreamWaitEvent(launched_from_, done_, 0);
    if (e != cudaSuccess) state_->fail(what_ + ": cudaStreamWaitEvent: " + cuda_text(e));
    // Safe to release: later work on the launching stream is ordered after the collective.
    keep_alive_.clear();
    waited_ = true;
  }

  bool poll() override {
    DeviceGuard guard(device_);
    check_async();
    const cudaError_t query = cudaEventQuery(done_);
    switch (event_state(query)) {
      case EventState::kDone: return true;
      case EventState::kPending: return false;
      case EventState::kFailed: break;
    }
    state_->fail(what_ + ": " + cuda_text(query));
  }

 private:
  void check_async() const {
    state_->check_timeout();
    if (state_->aborted) state_->fail(what_ + ": the NCCL communicator was aborted after an earlier failure");
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(state_->comm, &async);
    if (async != ncclSuccess) state_->fail(what_ + ": " + state_->nccl_text(async));
  }

  std::shared_ptr<NcclState> state_;
  cudaEvent_t done_;
  cudaStream_t launched_from_;
  int device_;
  std::vector<at::Tensor> keep_alive_;
  std::string what_;
  int64_t watch_key_;
  bool waited_ = false;
};

ncclDataType_t nccl_type(const at::Tensor& t, const std::string& what) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default:
      throw CommError(what + ": NCCL backend does not handle dtype " +
                      std::string(c10::toString(t.scalar_type())));
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int device_index, std::chrono::seconds timeout)
      : device_index_(device_index), state_(std::make_shared<NcclState>()) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    state_->rank = rank_;
    check_cuda(cudaSetDevice(device_index), "cudaSetDevice(" + std::to_string(device_index) + ")");
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    check_nccl(ncclCommInitRank(&state_->comm, world_, id, rank_), "ncclCommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    if (timeout.count() > 0) state_->start_watchdog(device_index, timeout);
  }

  ~NcclCommunicator() override {
    state_->stop_watchdog();
    DeviceGuard guard(device_index_);
    if (state_->aborted) {
      // A timed-out collective aborted it already.
    } else if (choose_teardown(state_->failed, std::uncaught_exceptions()) == Teardown::kAbort) {
      state_->abort();
    } else {
      cudaStreamSynchronize(stream_);
      ncclCommDestroy(state_->comm);
    }
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "nccl"; }
  at::Device device() const override {
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index_));
  }

  WorkPtr all_reduce(at::Tensor t, ReduceOp op) override {
    const auto what = describe("all_reduce", t);
    const auto type = checked_type(t, what);
    return launch(what, {t}, [&](cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), type, op == ReduceOp::kSum ? ncclSum : ncclMax,
                           state_->comm, s);
    });
  }

  WorkPtr reduce_scatter(at::Tensor input, at::Tensor output) override {
    const auto what = describe("reduce_scatter", input);
    const auto type = checked_type(input, what);
    checked_type(output, what);
    check_reduce_scatter_sizes(input, output, world_, what);
    return launch(what, {input, output}, [&](cudaStream_t s) {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), type, ncclSum, state_->comm, s);
    });
  }

  WorkPtr all_gather(at::Tensor buffer) override {
    const auto what = describe("all_gather", buffer);
    const auto type = checked_type(buffer, what);
    const int64_t chunk = check_all_gather_size(buffer, world_, what);
    return launch(what, {buffer}, [&](cudaStream_t s) {
      // In place: NCCL reads this rank's input from its own chunk of the output.
      auto* base = static_cast<char*>(buffer.data_ptr());
      return ncclAllGather(base + rank_ * chunk * buffer.element_size(), base, chunk, type, state_->comm, s);
    });
  }

  WorkPtr broadcast(at::Tensor t, int root) override {
    const auto what = describe("broadcast", t);
    const auto type = checked_type(t, what);
    return launch(what, {t}, [&](cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), type, root, state_->comm, s);
    });
  }

  void barrier() override {
    auto token = at::zeros({1}, at::TensorOptions().device(device()));
    all_reduce(token, ReduceOp::kSum)->wait();
    DeviceGuard guard(device_index_);
    check_cuda(cudaStreamSynchronize(compute_stream(device_index_)), "barrier: cudaStreamSynchronize");
  }

 private:
  // Queues one collective on the communication stream, after everything the current
  // compute stream has queued for its inputs; the Work orders that same stream after it.
  template <typename Call>
  WorkPtr launch(const std::string& what, std::vector<at::Tensor> tensors, Call call) {
    state_->check_timeout();
    if (state_->aborted) state_->fail(what + ": the NCCL communicator was aborted after an earlier failure");
    DeviceGuard guard(device_index_);
    const cudaStream_t from = compute_stream(device_index_);
    cudaEvent_t ready, done;
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), what + ": cudaEventCreate");
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), what + ": cudaEventCreate");
    check_cuda(cudaEventRecord(ready, from), what + ": cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, ready, 0), what + ": cudaStreamWaitEvent");
    cudaEventDestroy(ready);
    check_nccl(call(stream_), what);
    check_cuda(cudaEventRecord(done, stream_), what + ": cudaEventRecord");
    return std::make_shared<NcclWork>(state_, done, from, device_index_, std::move(tensors), what);
  }

  std::string describe(const char* op, const at::Tensor& t) const {
    return "NCCL " + std::string(op) + " of " + std::to_string(t.numel()) + " elements";
  }
  // The tensor's NCCL type, refused (before anything is queued) when NCCL cannot take it.
  ncclDataType_t checked_type(const at::Tensor& t, const std::string& what) const {
    if (!t.is_cuda() || t.get_device() != device_index_)
      throw CommError("rank " + std::to_string(rank_) + ": " + what + ": the NCCL backend takes tensors on cuda:" +
                      std::to_string(device_index_) + " (got " + t.device().str() + ")");
    if (!t.is_contiguous()) throw CommError("rank " + std::to_string(rank_) + ": " + what + ": tensor must be contiguous");
    return nccl_type(t, "rank " + std::to_string(rank_) + ": " + what);
  }
  void check_nccl(ncclResult_t r, const std::string& what) const {
    if (r != ncclSuccess) state_->fail(what + ": " + state_->nccl_text(r));
  }
  void check_cuda(cudaError_t e, const std::string& what) const {
    if (e != cudaSuccess) state_->fail(what + ": " + cuda_text(e));
  }

  int device_index_;
  std::shared_ptr<NcclState> state_;
  int rank_ = 0, world_ = 1;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

EventState event_state(cudaError_t query) {
  if (query == cudaSuccess) return EventState::kDone;
  if (query == cudaErrorNotReady) return EventState::kPending;
  return EventState::kFailed;
}

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL 2.9 and later encode major * 10000 + minor * 100 + patch; earlier, * 1000 and * 100.
  const int major = v >= 10000 ? v / 10000 : v / 1000, minor = v >= 10000 ? v / 100 % 100 : v / 100 % 10;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(v % 100);
}

std::string cuda_runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) return "unknown";
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

std::unique_ptr<Communicator> make_nccl_communicator(int device_index, std::chrono::seconds timeout) {
  return std::make_unique<NcclCommunicator>(device_index, timeout);
}

}  // namespace crsm::dist
