#include <ATen/ATen.h>
#include <mpi.h>

#include <chrono>
#include <limits>

#include "dist/communicator.h"

namespace crsm::dist {
namespace {

using Clock = std::chrono::steady_clock;

class MpiWork final : public Work {
 public:
  MpiWork(MPI_Request request, std::vector<at::Tensor> keep_alive, std::string what,
          std::chrono::seconds timeout)
      : request_(request), keep_alive_(std::move(keep_alive)), what_(std::move(what)), timeout_(timeout) {}
  ~MpiWork() override {
    if (request_ != MPI_REQUEST_NULL) finish(/*throw_on_timeout=*/false);
  }
  void wait() override {
    if (request_ != MPI_REQUEST_NULL) finish(/*throw_on_timeout=*/true);
  }
  bool poll() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    check(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    if (done) keep_alive_.clear();
    return done != 0;
  }

 private:
  // Blocks until the request completes or the timeout passes. MPI_Test in a loop costs
  // what MPI_Wait does (Open MPI's wait spins on the same progress engine) and lets the
  // clock be read. After any timeout in this process the rest give up at once: the
  // job is ending, and unwinding must not wait out one timeout per pending bucket.
  void finish(bool throw_on_timeout) {
    if (timeout_.count() <= 0) {
      const int code = MPI_Wait(&request_, MPI_STATUS_IGNORE);
      keep_alive_.clear();
      if (throw_on_timeout) check(code);
      return;
    }
    const auto deadline = Clock::now() + timeout_;
    for (int done = 0;;) {
      const int code = MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS || done) {
        keep_alive_.clear();
        if (throw_on_timeout) check(code);
        return;
      }
      if (collectives_abandoned() || Clock::now() >= deadline) break;
    }
    const bool first = !collectives_abandoned();
    abandon_collectives();
    // The peers may still write into the buffers, so they are never freed.
    new std::vector<at::Tensor>(std::move(keep_alive_));
    request_ = MPI_REQUEST_NULL;
    if (!throw_on_timeout) return;
    if (!first) throw CommTimeout(what_ + ": abandoned after an earlier collective timed out");
    throw CommTimeout(what_ + ": not complete after " + std::to_string(timeout_.count()) +
                      " s (--collective-timeout): another rank is stopped, stuck or far behind");
  }
  void check(int code) const;

  MPI_Request request_;
  std::vector<at::Tensor> keep_alive_;
  std::string what_;
  std::chrono::seconds timeout_;
};

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length));
}

void MpiWork::check(int code) const {
  if (code != MPI_SUCCESS) throw CommFailure(what_ + ": " + mpi_error_text(code));
}

MPI_Datatype mpi_type(const at::Tensor& t, const std::string& what) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    default:
      throw CommError(what + ": MPI backend does not handle dtype " +
                      std::string(c10::toString(t.scalar_type())));
  }
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kSum ? MPI_SUM : MPI_MAX; }

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(std::chrono::seconds timeout) : timeout_(timeout) {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    // Report failures as exceptions carrying rank and operation rather than aborting.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "mpi"; }
  at::Device device() const override { return at::Device(at::kCPU); }

  WorkPtr all_reduce(at::Tensor t, ReduceOp op) override {
    const auto what = describe("all_reduce", t);
    check_tensor(t, what);
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()),
                         mpi_type(t, what), mpi_op(op), comm_, &req),
          what);
    return std::make_shared<MpiWork>(req, std::vector<at::Tensor>{t}, what, timeout_);
  }

  WorkPtr reduce_scatter(at::Tensor input, at::Tensor output) override {
    const auto what = describe("reduce_scatter", input);
    check_tensor(input, what);
    check_tensor(output, what);
    check_reduce_scatter_sizes(input, output, world_, what);
    MPI_Request req;
    check(MPI_Ireduce_scatter_block(input.data_ptr(), output.data_ptr(),
                                    static_cast<int>(output.numel()), mpi_type(input, what),
                                    MPI_SUM, comm_, &req),
          what);
    return std::make_shared<MpiWork>(req, std::vector<at::Tensor>{input, output}, what, timeout_);
  }

  WorkPtr all_gather(at::Tensor buffer) override {
    const auto what = describe("all_gather", buffer);
    check_tensor(buffer, what);
    const int64_t chunk = check_all_gather_size(buffer, world_, what);
    MPI_Request req;
    check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer.data_ptr(),
                         static_cast<int>(chunk), mpi_type(buffer, what),
                         comm_, &req),
          what);
    return std::make_shared<MpiWork>(req, std::vector<at::Tensor>{buffer}, what, timeout_);
  }

  WorkPtr broadcast(at::Tensor t, int root) override {
    const auto what = describe("broadcast", t);
    check_tensor(t, what);
    MPI_Request req;
    check(MPI_Ibcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t, what), root, comm_, &req),
          what);
    return std::make_shared<MpiWork>(req, std::vector<at::Tensor>{t}, what, timeout_);
  }

  void barrier() override {
    const std::string what = "rank " + std::to_string(rank_) + ": MPI barrier";
    MPI_Request req;
    check(MPI_Ibarrier(comm_, &req), what);
    MpiWork(req, {}, what, timeout_).wait();
  }

 private:
  std::string describe(const char* op, const at::Tensor& t) const {
    return "rank " + std::to_string(rank_) + ": MPI " + op + " of " + std::to_string(t.numel()) +
           " elements";
  }
  static void check_tensor(const at::Tensor& t, const std::string& what) {
    if (!t.device().is_cpu())
      throw CommError(what + ": the MPI backend takes CPU tensors (got " + t.device().str() +
                      "; CUDA tensors need the NCCL backend)");
    if (!t.is_contiguous()) throw CommError(what + ": tensor must be contiguous");
    if (t.numel() > std::numeric_limits<int>::max())
      throw CommError(what + ": more elements than one MPI call can carry; use smaller buckets");
  }
  static void check(int code, const std::string& what) {
    if (code != MPI_SUCCESS) throw CommFailure(what + ": " + mpi_error_text(code));
  }

  MPI_Comm comm_;
  int rank_ = 0, world_ = 1;
  std::chrono::seconds timeout_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(std::chrono::seconds timeout) {
  return std::make_unique<MpiCommunicator>(timeout);
}

}  // namespace crsm::dist
