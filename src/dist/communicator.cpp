#include "dist/communicator.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstring>

namespace crsm::dist {

c10::Device rank_device(const std::string& name, const Runtime& rt) {
  if (name.rfind("cuda", 0) != 0) return c10::Device(name);
  if (!torch::cuda::is_available())
    throw UsageError("--device " + name + ": no CUDA device is available (CPU-only LibTorch or no visible GPU)");
  const int visible = std::max<int>(1, static_cast<int>(torch::cuda::device_count()));
  if (name == "cuda") return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(rt.local_rank % visible));
  // The config's constraint admits "cuda:N" with N of at most four digits.
  const int index = std::stoi(name.substr(5));
  if (index >= visible)
    throw UsageError("--device " + name + ": this process sees " + std::to_string(visible) + " GPU" +
                     (visible == 1 ? "" : "s") + " (cuda:0 to cuda:" + std::to_string(visible - 1) + ")");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::unique_ptr<Communicator> make_communicator(const Runtime& rt, const c10::Device& device,
                                                std::chrono::seconds timeout) {
  if (!rt.mpi) return make_local_communicator();
  if (device.is_cuda()) return make_nccl_communicator(device.has_index() ? device.index() : 0, timeout);
  return make_mpi_communicator(timeout);
}

void check_reduce_scatter_sizes(const at::Tensor& input, const at::Tensor& output, int world,
                                const std::string& what) {
  if (input.numel() != output.numel() * world || input.scalar_type() != output.scalar_type())
    throw CommError(what + ": output must be one of " + std::to_string(world) +
                    " equal chunks of the input, of the same dtype (got " +
                    std::to_string(output.numel()) + " elements)");
}

int64_t check_all_gather_size(const at::Tensor& buffer, int world, const std::string& what) {
  if (buffer.numel() % world != 0)
    throw CommError(what + ": buffer of " + std::to_string(buffer.numel()) +
                    " elements does not split into " + std::to_string(world) + " chunks");
  return buffer.numel() / world;
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

Teardown choose_teardown(bool failure_seen, int uncaught_exceptions) {
  return failure_seen || uncaught_exceptions > 0 ? Teardown::kAbort : Teardown::kDestroy;
}

std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& value) {
  const int world = comm.world_size();
  if (world == 1) return {value};
  const auto on = at::TensorOptions().device(comm.device());
  auto lengths = at::zeros({world}, on.dtype(at::kLong));
  lengths[comm.rank()] = static_cast<int64_t>(value.size());
  comm.all_gather(lengths)->wait();
  lengths = lengths.cpu();
  const int64_t widest = std::max<int64_t>(1, lengths.max().item<int64_t>());
  auto bytes = at::zeros({world * widest}, at::kByte);
  std::memcpy(static_cast<char*>(bytes.data_ptr()) + comm.rank() * widest, value.data(), value.size());
  bytes = bytes.to(comm.device());
  comm.all_gather(bytes)->wait();
  bytes = bytes.cpu();
  std::vector<std::string> out;
  for (int r = 0; r < world; ++r)
    out.emplace_back(static_cast<const char*>(bytes.data_ptr()) + r * widest,
                     static_cast<size_t>(lengths[r].item<int64_t>()));
  return out;
}

int preemption_signal_on_any_rank(Communicator& comm) {
  return static_cast<int>(all_reduce_scalar(comm, preemption_signal(), ReduceOp::kMax));
}

void stop_if_preempted_on_any_rank(Communicator& comm, const std::string& command, const std::string& state) {
  if (const int sig = preemption_signal_on_any_rank(comm))
    throw Preempted(command + ": preempted by " + signal_name(sig) + " " + state);
}

std::string run_on_root(Communicator& comm, const std::function<std::string()>& work) {
  if (comm.world_size() == 1) return work();
  // The first character says how it went: done, one of our errors, stopped by a
  // preemption signal, or anything else.
  constexpr char kDone = '=', kOurs = '!', kStopped = '^', kOther = '?';
  if (comm.rank() == 0) {
    std::string result;
    // The others wait for an answer, not an abort; rank 0 then rethrows its own error.
    try {
      result = work();
    } catch (const Error& e) {
      broadcast_string(comm, kOurs + std::string(e.what()));
      throw;
    } catch (const Preempted& e) {
      broadcast_string(comm, kStopped + std::string(e.what()));
      throw;
    } catch (const std::exception& e) {
      broadcast_string(comm, kOther + std::string(e.what()));
      throw;
    }
    broadcast_string(comm, kDone + result);
    return result;
  }
  const std::string answer = broadcast_string(comm, "");
  if (answer.at(0) == kOurs) throw Error(answer.substr(1));
  if (answer.at(0) == kStopped) throw Preempted(answer.substr(1));
  if (answer.at(0) == kOther) throw std::runtime_error(answer.substr(1));
  return answer.substr(1);
}

}  // namespace crsm::dist
