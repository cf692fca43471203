#include "dist/communicator.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>

#include <cstring>

namespace crsm::dist {

std::unique_ptr<Communicator> make_communicator(const Runtime& rt, const std::string& device) {
  if (!rt.mpi) return make_local_communicator();
  if (device.rfind("cuda", 0) == 0) {
    const auto colon = device.find(':');
    // One GPU per local rank; when the scheduler shows each rank only its own GPU(s)
    // (srun --gpus-per-task), the local rank wraps onto those.
    const int visible = std::max<int>(1, static_cast<int>(torch::cuda::device_count()));
    const int index =
        colon == std::string::npos ? rt.local_rank % visible : std::stoi(device.substr(colon + 1));
    return make_nccl_communicator(index);
  }
  return make_mpi_communicator();
}

void all_reduce_now(Communicator& comm, at::Tensor tensor, ReduceOp op) {
  comm.all_reduce(std::move(tensor), op)->wait();
}

double all_reduce_scalar(Communicator& comm, double value, ReduceOp op) {
  if (comm.world_size() == 1) return value;
  auto t = at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(comm.device()));
  all_reduce_now(comm, t, op);
  return t.item<double>();
}

std::string broadcast_string(Communicator& comm, const std::string& value, int root) {
  if (comm.world_size() == 1) return value;
  const auto on = at::TensorOptions().device(comm.device());
  auto length = at::full({1}, static_cast<int64_t>(value.size()), on.dtype(at::kLong));
  comm.broadcast(length, root)->wait();
  auto bytes = at::zeros({length.item<int64_t>()}, at::kByte);
  if (comm.rank() == root) std::memcpy(bytes.data_ptr(), value.data(), value.size());
  bytes = bytes.to(comm.device());
  comm.broadcast(bytes, root)->wait();
  bytes = bytes.cpu();
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

}  // namespace crsm::dist
