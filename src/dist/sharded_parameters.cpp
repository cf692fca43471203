#include "dist/sharded_parameters.h"

#include <ATen/record_function.h>
#include <c10/core/DeviceGuard.h>
#include <torch/torch.h>

#include <chrono>

namespace crsm::dist {

struct ShardedParameters::Unit {
  at::Tensor full;             // the unit's flat parameters; storage empty while released
  int64_t begin = 0;           // its first element in the flat layout
  int64_t bytes = 0;
  std::vector<WorkPtr> works;  // the gather in flight
  enum class State { kReleased, kInFlight, kGathered } state = State::kReleased;
};

namespace {

// Gives a tensor's storage `bytes` from its allocator, or none; views keep their sizes.
void resize_storage(const at::Tensor& t, int64_t bytes) {
  const c10::DeviceGuard on_device(t.device());
  auto* storage = t.storage().unsafeGetStorageImpl();
  if (bytes == 0) storage->set_data_ptr_noswap(at::DataPtr(nullptr, t.device()));
  else storage->set_data_ptr_noswap(storage->allocator()->allocate(static_cast<size_t>(bytes)));
  storage->set_nbytes(static_cast<size_t>(bytes));
}

}  // namespace

ShardedParameters::ShardedParameters(const FlatLayout& layout, std::vector<at::Tensor>& params, Communicator& comm,
                                     bool prefetch)
    : layout_(layout), comm_(comm), prefetch_(prefetch), units_(layout.units().size()),
      unit_of_bucket_(layout.buckets().size(), -1), taken_(layout.units().size(), 0) {
  torch::NoGradGuard no_grad;
  const auto options = params.at(0).options().requires_grad(false);
  shard_ = torch::zeros({layout.shard_elements()}, options);
  const int world = layout.world_size(), rank = comm.rank();
  for (size_t u = 0; u < units_.size(); ++u) {
    const auto& range = layout.units()[u];
    if (range.empty()) continue;
    auto& unit = units_[u];
    unit.begin = layout.buckets()[static_cast<size_t>(range.first_bucket)].begin;
    unit.full = torch::zeros({layout.unit_elements(static_cast<int>(u))}, options);
    unit.bytes = unit.full.numel() * unit.full.element_size();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& fp = layout.params()[i];
      if (fp.info.unit != static_cast<int>(u)) continue;
      auto view = unit.full.narrow(0, fp.offset - unit.begin, fp.info.numel());
      view.copy_(params[i].reshape(-1));
      params[i].set_data(view.view(params[i].sizes()));
    }
    comm_.broadcast(unit.full, 0)->wait();
    for (int b = range.first_bucket; b <= range.last_bucket; ++b) {
      const auto& bucket = layout.buckets()[static_cast<size_t>(b)];
      const int64_t chunk = bucket.chunk(world);
      shard_.narrow(0, layout.shard_offset(b), chunk)
          .copy_(unit.full.narrow(0, bucket.begin - unit.begin + rank * chunk, chunk));
      unit_of_bucket_[static_cast<size_t>(b)] = static_cast<int>(u);
    }
    resize_storage(unit.full, 0);
  }
}

// Gathers in flight are not waited for: a wait can throw (a peer stopped), and this may
// run while an exception unwinds. The Works finish or abandon their collectives
// themselves, keeping the buffers alive as long as a peer may still write into them.
ShardedParameters::~ShardedParameters() = default;

at::Tensor ShardedParameters::owned(const Segment& seg) {
  return shard_.narrow(0, layout_.shard_position(seg, comm_.rank()), seg.length);
}

bool ShardedParameters::has(int unit) const {
  return unit >= 0 && static_cast<size_t>(unit) < units_.size() && units_[static_cast<size_t>(unit)].full.defined();
}

void ShardedParameters::launch(int u) {
  if (!has(u)) return;
  auto& unit = units_[static_cast<size_t>(u)];
  if (unit.state != Unit::State::kReleased) return;
  RECORD_USER_SCOPE("crsm::zero3_gather");  // the profiler's range (--profile-steps)
  torch::NoGradGuard no_grad;
  resize_storage(unit.full, unit.bytes);
  gathered_ += unit.bytes;
  peak_gathered_ = std::max(peak_gathered_, gathered_);
  const auto& range = layout_.units()[static_cast<size_t>(u)];
  const int world = layout_.world_size(), rank = comm_.rank();
  for (int b = range.first_bucket; b <= range.last_bucket; ++b) {
    const auto& bucket = layout_.buckets()[static_cast<size_t>(b)];
    const int64_t chunk = bucket.chunk(world);
    auto region = unit.full.narrow(0, bucket.begin - unit.begin, bucket.end - bucket.begin);
    region.narrow(0, rank * chunk, chunk).copy_(shard_.narrow(0, layout_.shard_offset(b), chunk));
    unit.works.push_back(comm_.all_gather(region));
  }
  unit.state = Unit::State::kInFlight;
}

void ShardedParameters::gather(int u) {
  if (!has(u)) return;
  launch(u);
  auto& unit = units_[static_cast<size_t>(u)];
  RECORD_USER_SCOPE("crsm::zero3_gather_wait");
  const auto start = std::chrono::steady_clock::now();
  for (auto& w : unit.works) w->wait();
  waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  unit.works.clear();
  unit.state = Unit::State::kGathered;
}

void ShardedParameters::release(int u) {
  if (!has(u)) return;
  auto& unit = units_[static_cast<size_t>(u)];
  if (unit.state == Unit::State::kReleased) return;
  for (auto& w : unit.works) w->wait();
  unit.works.clear();
  resize_storage(unit.full, 0);
  gathered_ -= unit.bytes;
  unit.state = Unit::State::kReleased;
}

void ShardedParameters::enter_forward(int unit) {
  gather(unit);
  if (prefetch_) launch(unit + 1);
}

void ShardedParameters::leave_forward(int unit) { release(unit); }

void ShardedParameters::enter_backward(int unit) {
  gather(unit);
  if (prefetch_) launch(unit - 1);
}

void ShardedParameters::gradients_taken(int bucket) {
  const int u = unit_of_bucket_.at(static_cast<size_t>(bucket));
  if (u < 0) return;
  const auto& range = layout_.units()[static_cast<size_t>(u)];
  if (++taken_[static_cast<size_t>(u)] < range.last_bucket - range.first_bucket + 1) return;
  taken_[static_cast<size_t>(u)] = 0;
  release(u);
}

void ShardedParameters::release_all() {
  for (size_t u = 0; u < units_.size(); ++u) {
    taken_[u] = 0;
    release(static_cast<int>(u));
  }
}

int64_t ShardedParameters::shard_bytes() const { return shard_.numel() * shard_.element_size(); }

}  // namespace crsm::dist
