#include <ATen/ATen.h>

#include "dist/communicator.h"

namespace crsm::dist {
namespace {

class DoneWork final : public Work {
 public:
  void wait() override {}
  bool poll() override { return true; }
};

// World size 1: reductions and gathers over one rank leave the data as it is.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "local"; }
  at::Device device() const override { return at::Device(at::kCPU); }

  WorkPtr all_reduce(at::Tensor, ReduceOp) override { return done(); }
  WorkPtr reduce_scatter(at::Tensor input, at::Tensor output) override {
    check_reduce_scatter_sizes(input, output, 1, "rank 0: reduce_scatter");
    if (!input.is_same(output)) output.copy_(input.view_as(output));
    return done();
  }
  WorkPtr all_gather(at::Tensor) override { return done(); }
  WorkPtr broadcast(at::Tensor, int) override { return done(); }
  void barrier() override {}

 private:
  static WorkPtr done() { return std::make_shared<DoneWork>(); }
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() {
  return std::make_unique<LocalCommunicator>();
}

}  // namespace crsm::dist
