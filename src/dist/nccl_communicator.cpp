// The NCCL backend: CUDA tensors, one communicator per process (one GPU per rank), the
// NCCL unique id broadcast over MPI. Collectives run on a dedicated stream so they
// overlap with backward on the compute stream; events order the two streams.
#include <ATen/ATen.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#ifdef CRSM_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "dist/communicator.h"

namespace crsm::dist {
namespace {

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

class NcclWork final : public Work {
 public:
  NcclWork(cudaEvent_t done, ncclComm_t comm, int device, std::vector<at::Tensor> keep_alive,
           std::string what)
      : done_(done), comm_(comm), device_(device), keep_alive_(std::move(keep_alive)), what_(std::move(what)) {}
  ~NcclWork() override {
    // Buffers go back to the caching allocator only once the compute stream is ordered
    // after the collective that still reads or writes them.
    if (!waited_) cudaStreamWaitEvent(compute_stream(device_), done_, 0);
    cudaEventDestroy(done_);
  }

  void wait() override {
    if (waited_) return;
    check_async();
    const cudaError_t e = cudaStreamWaitEvent(compute_stream(device_), done_, 0);
    if (e != cudaSuccess) throw CommError(what_ + ": cudaStreamWaitEvent: " + cuda_text(e));
    // Safe to release: later compute-stream work is ordered after the collective.
    keep_alive_.clear();
    waited_ = true;
  }
  bool poll() override {
    check_async();
    return cudaEventQuery(done_) == cudaSuccess;
  }

 private:
  void check_async() const {
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess) throw CommError(what_ + ": " + ncclGetErrorString(async));
  }

  cudaEvent_t done_;
  ncclComm_t comm_;
  int device_;
  std::vector<at::Tensor> keep_alive_;
  std::string what_;
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
  explicit NcclCommunicator(int device_index) : device_index_(device_index) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    check_cuda(cudaSetDevice(device_index), "cudaSetDevice(" + std::to_string(device_index) + ")");
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    check_nccl(ncclCommInitRank(&comm_, world_, id, rank_), "ncclCommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclCommunicator() override {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
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
    check_tensor(t, what);
    return launch(what, {t}, [&] {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t, what),
                           op == ReduceOp::kSum ? ncclSum : ncclMax, comm_, stream_);
    });
  }

  WorkPtr reduce_scatter(at::Tensor input, at::Tensor output) override {
    const auto what = describe("reduce_scatter", input);
    check_tensor(input, what);
    check_tensor(output, what);
    check_reduce_scatter_sizes(input, output, world_, what);
    return launch(what, {input, output}, [&] {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(),
                               nccl_type(input, what), ncclSum, comm_, stream_);
    });
  }

  WorkPtr all_gather(at::Tensor buffer) override {
    const auto what = describe("all_gather", buffer);
    check_tensor(buffer, what);
    const int64_t chunk = check_all_gather_size(buffer, world_, what);
    return launch(what, {buffer}, [&] {
      // In place: NCCL reads this rank's input from its own chunk of the output.
      auto* base = static_cast<char*>(buffer.data_ptr());
      return ncclAllGather(base + rank_ * chunk * buffer.element_size(), base, chunk,
                           nccl_type(buffer, what), comm_, stream_);
    });
  }

  WorkPtr broadcast(at::Tensor t, int root) override {
    const auto what = describe("broadcast", t);
    check_tensor(t, what);
    return launch(what, {t}, [&] {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t, what), root, comm_,
                           stream_);
    });
  }

  void barrier() override {
    auto token = at::zeros({1}, at::TensorOptions().device(device()));
    all_reduce(token, ReduceOp::kSum)->wait();
    check_cuda(cudaStreamSynchronize(compute_stream(device_index_)), "barrier: cudaStreamSynchronize");
  }

 private:
  template <typename Call>
  WorkPtr launch(const std::string& what, std::vector<at::Tensor> tensors, Call call) {
    cudaEvent_t ready, done;
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), what + ": cudaEventCreate");
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), what + ": cudaEventCreate");
    // The collective must see everything the compute stream has queued for its inputs.
    check_cuda(cudaEventRecord(ready, compute_stream(device_index_)), what + ": cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, ready, 0), what + ": cudaStreamWaitEvent");
    cudaEventDestroy(ready);
    check_nccl(call(), what);
    check_cuda(cudaEventRecord(done, stream_), what + ": cudaEventRecord");
    return std::make_shared<NcclWork>(done, comm_, device_index_, std::move(tensors), what);
  }

  std::string describe(const char* op, const at::Tensor& t) const {
    return "rank " + std::to_string(rank_) + ": NCCL " + op + " of " + std::to_string(t.numel()) +
           " elements";
  }
  void check_tensor(const at::Tensor& t, const std::string& what) const {
    if (!t.is_cuda() || t.get_device() != device_index_)
      throw CommError(what + ": the NCCL backend takes tensors on cuda:" +
                      std::to_string(device_index_) + " (got " + t.device().str() + ")");
    if (!t.is_contiguous()) throw CommError(what + ": tensor must be contiguous");
  }
  void check_nccl(ncclResult_t r, const std::string& what) const {
    if (r != ncclSuccess)
      throw CommError("rank " + std::to_string(rank_) + ": " + what + ": " + ncclGetErrorString(r));
  }
  void check_cuda(cudaError_t e, const std::string& what) const {
    if (e != cudaSuccess)
      throw CommError("rank " + std::to_string(rank_) + ": " + what + ": " + cuda_text(e));
  }

  int device_index_;
  int rank_ = 0, world_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(int device_index) {
  return std::make_unique<NcclCommunicator>(device_index);
}

}  // namespace crsm::dist
