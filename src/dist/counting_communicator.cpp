#include "dist/counting_communicator.h"

namespace crsm::dist {

double CountingCommunicator::part(const at::Tensor& t) const {
  const int w = world_size();
  return static_cast<double>(t.numel()) * static_cast<double>(t.element_size()) * (w - 1) / w;
}

WorkPtr CountingCommunicator::all_reduce(at::Tensor tensor, ReduceOp op) {
  sent_ += 2 * part(tensor);
  return inner_.all_reduce(tensor, op);
}

WorkPtr CountingCommunicator::reduce_scatter(at::Tensor input, at::Tensor output) {
  sent_ += part(input);
  return inner_.reduce_scatter(input, output);
}

WorkPtr CountingCommunicator::all_gather(at::Tensor buffer) {
  sent_ += part(buffer);
  return inner_.all_gather(buffer);
}

WorkPtr CountingCommunicator::broadcast(at::Tensor tensor, int root) {
  if (rank() == root && world_size() > 1)
    sent_ += static_cast<double>(tensor.numel()) * static_cast<double>(tensor.element_size());
  return inner_.broadcast(tensor, root);
}

}  // namespace crsm::dist
