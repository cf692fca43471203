#include "dist/data_parallel.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <cmath>
#include <deque>

namespace crsm::dist {

struct DataParallel::BucketState {
  int pending = 0;     // gradients still to arrive this backward
  bool ready = false;  // every gradient arrived
  at::Tensor staging;  // stage 2: the bucket's full gradient while it is reduced
  at::Tensor received; // stage 2: this rank's reduced chunk
  WorkPtr work;
};

namespace {

// Runs after AccumulateGrad has added a backward's contribution to a parameter's .grad.
class GradientReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  GradientReadyHook(DataParallel* owner, int param) : owner_(owner), param_(param) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    owner_->on_gradient_ready(param_);
    return outputs;
  }

 private:
  DataParallel* owner_;
  int param_;
};

}  // namespace

DataParallel::DataParallel(const std::vector<std::pair<std::string, at::Tensor>>& params,
                           const std::vector<bool>& decay, Communicator& comm,
                           DataParallelOptions options)
    : comm_(comm),
      options_(options),
      layout_(
          [&] {
            std::vector<ParamInfo> infos;
            for (size_t i = 0; i < params.size(); ++i)
              infos.push_back({params[i].first, params[i].second.sizes().vec(), decay.at(i)});
            return infos;
          }(),
          comm.world_size(),
          std::max<int64_t>(1, options.bucket_bytes /
                                   (params.empty() ? 4 : params[0].second.element_size()))) {
  if (options_.zero_stage < 0 || options_.zero_stage > 2)
    throw std::invalid_argument("--zero-stage " + std::to_string(options_.zero_stage) +
                                ": expected 0, 1 or 2");
  if (params.empty()) throw std::invalid_argument("data parallel: no trainable parameters");
  if (options_.reduce_after_backward && options_.zero_stage == 2)
    throw std::invalid_argument("reduce_after_backward is a baseline for stages 0 and 1 only");
  torch::NoGradGuard no_grad;
  const auto opts = params[0].second.options().requires_grad(false);
  flat_params_ = torch::zeros({layout_.total()}, opts);
  // Layout order is reverse registration order.
  for (const auto& fp : layout_.params()) {
    auto it = std::find_if(params.begin(), params.end(),
                           [&](const auto& p) { return p.first == fp.info.name; });
    at::Tensor p = it->second;
    auto view = flat_params_.narrow(0, fp.offset, fp.info.numel());
    view.copy_(p.reshape(-1));
    p.set_data(view.view(p.sizes()));
    model_params_.push_back(p);
  }
  comm_.broadcast(flat_params_, 0)->wait();

  const bool sharded = options_.zero_stage >= 1;
  segments_ = layout_.owned_segments(comm_.rank(), sharded);
  if (options_.zero_stage == 2) {
    grad_shard_ = torch::zeros({layout_.shard_elements()}, opts);
    int64_t at = 0;
    for (const auto& b : layout_.buckets()) {
      shard_offset_.push_back(at);
      at += b.chunk(layout_.world_size());
    }
  } else {
    flat_grads_ = torch::zeros({layout_.total()}, opts);
    for (size_t i = 0; i < model_params_.size(); ++i) {
      const auto& fp = layout_.params()[i];
      model_params_[i].mutable_grad() =
          flat_grads_.narrow(0, fp.offset, fp.info.numel()).view(model_params_[i].sizes());
    }
  }
  for (const auto& seg : segments_) {
    owned_params_.push_back(flat_params_.narrow(0, seg.flat_offset, seg.length));
    if (options_.zero_stage == 2) {
      const auto& bucket = layout_.buckets()[static_cast<size_t>(seg.bucket)];
      const int64_t chunk_begin = bucket.begin + comm_.rank() * bucket.chunk(layout_.world_size());
      const int64_t at = shard_offset_[static_cast<size_t>(seg.bucket)] + (seg.flat_offset - chunk_begin);
      owned_grads_.push_back(grad_shard_.narrow(0, at, seg.length));
    } else {
      owned_grads_.push_back(flat_grads_.narrow(0, seg.flat_offset, seg.length));
    }
  }
  for (size_t b = 0; b < layout_.buckets().size(); ++b) buckets_.push_back(std::make_unique<BucketState>());

  if (!options_.reduce_after_backward) {
    for (size_t i = 0; i < model_params_.size(); ++i) {
      auto accumulator = torch::autograd::impl::grad_accumulator(model_params_[i]);
      const uintptr_t key =
          accumulator->add_post_hook(std::make_unique<GradientReadyHook>(this, static_cast<int>(i)));
      hooks_.emplace_back(std::move(accumulator), key);
    }
  }
}

DataParallel::~DataParallel() {
  for (auto& [node, key] : hooks_) node->del_post_hook(key);
}

void DataParallel::zero_grad() {
  if (flat_grads_.defined()) flat_grads_.zero_();
  if (grad_shard_.defined()) grad_shard_.zero_();
  for (auto& p : model_params_)
    if (options_.zero_stage == 2) p.mutable_grad() = at::Tensor();
}

void DataParallel::begin_micro_batch(bool last) {
  syncing_ = last || options_.zero_stage == 2;
  next_launch_ = 0;
  retired_ = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b]->pending = static_cast<int>(layout_.buckets()[b].params.size());
    buckets_[b]->ready = false;
  }
}

at::Tensor DataParallel::allocate_staging(int64_t elements) {
  auto t = torch::zeros({elements}, flat_params_.options());
  staging_bytes_ += elements * t.element_size();
  peak_staging_bytes_ = std::max(peak_staging_bytes_, staging_bytes_);
  return t;
}

void DataParallel::release_staging(at::Tensor& t) {
  if (!t.defined()) return;
  staging_bytes_ -= t.numel() * t.element_size();
  t = at::Tensor();
}

void DataParallel::on_gradient_ready(int param) {
  if (!syncing_) return;
  const auto& fp = layout_.params()[static_cast<size_t>(param)];
  auto& p = model_params_[static_cast<size_t>(param)];
  for (int b = fp.first_bucket; b <= fp.last_bucket; ++b) {
    auto& state = *buckets_[static_cast<size_t>(b)];
    if (options_.zero_stage == 2 && p.grad().defined()) {
      // The part of this parameter's gradient that falls in bucket b.
      const auto& bucket = layout_.buckets()[static_cast<size_t>(b)];
      const int64_t lo = std::max(bucket.begin, fp.offset);
      const int64_t hi = std::min(bucket.data_end, fp.offset + fp.info.numel());
      if (!state.staging.defined()) state.staging = allocate_staging(bucket.end - bucket.begin);
      state.staging.narrow(0, lo - bucket.begin, hi - lo)
          .copy_(p.grad().reshape(-1).narrow(0, lo - fp.offset, hi - lo));
    }
    if (--state.pending == 0) state.ready = true;
  }
  // Stage 2 keeps no full gradient: the bucket copies are reduced and then dropped.
  if (options_.zero_stage == 2) p.mutable_grad() = at::Tensor();
  launch_ready_in_order();
  poll_in_flight();
}

void DataParallel::launch_ready_in_order() {
  // Every rank must issue collectives in the same order, whatever order hooks fire in.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->ready) {
    launch(next_launch_++);
    // Stage 2 holds a bucket's full gradient until its reduction is retired: keeping at
    // most kMaxInFlight in flight bounds that memory (MPI only progresses inside MPI
    // calls, so waiting is what retires them).
    while (options_.zero_stage == 2 && next_launch_ - retired_ > kMaxInFlight) retire(retired_++);
  }
}

void DataParallel::launch(size_t b) {
  torch::NoGradGuard no_grad;
  const auto& bucket = layout_.buckets()[b];
  auto& state = *buckets_[b];
  const double inv_world = 1.0 / layout_.world_size();
  if (options_.zero_stage == 2) {
    if (!state.staging.defined()) state.staging = allocate_staging(bucket.end - bucket.begin);
    state.staging.mul_(inv_world);
    state.received = allocate_staging(bucket.chunk(layout_.world_size()));
    state.work = comm_.reduce_scatter(state.staging, state.received);
  } else {
    auto view = flat_grads_.narrow(0, bucket.begin, bucket.end - bucket.begin);
    view.mul_(inv_world);
    state.work = comm_.all_reduce(view, ReduceOp::kSum);
  }
}

void DataParallel::retire(size_t b) {
  torch::NoGradGuard no_grad;
  auto& state = *buckets_[b];
  if (state.work) state.work->wait();
  state.work.reset();
  if (options_.zero_stage == 2) {
    // Accumulates over micro-batches: each one's reduced chunk adds to the shard.
    grad_shard_.narrow(0, shard_offset_[b], state.received.numel()).add_(state.received);
    release_staging(state.staging);
    release_staging(state.received);
  }
}

void DataParallel::poll_in_flight() {
  while (retired_ < next_launch_ && buckets_[retired_]->work && buckets_[retired_]->work->poll())
    retire(retired_++);
  for (size_t b = retired_; b < next_launch_; ++b)
    if (buckets_[b]->work) buckets_[b]->work->poll();
}

void DataParallel::end_micro_batch() {
  if (!syncing_) return;
  // Buckets whose parameters got no gradient this step (or all of them, when hooks are
  // off) are reduced now, still in order.
  for (auto& state : buckets_) state->ready = true;
  launch_ready_in_order();
  while (retired_ < next_launch_) retire(retired_++);
  syncing_ = false;
}

double DataParallel::grad_norm() {
  torch::NoGradGuard no_grad;
  // Summed where the gradients live and read once: on a GPU each read is a sync.
  const auto device = owned_grads_.empty() ? comm_.device() : owned_grads_.front().device();
  auto sum = torch::zeros({1}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  for (const auto& g : owned_grads_) sum += g.to(torch::kDouble).pow(2).sum();
  if (options_.zero_stage >= 1) all_reduce_now(comm_, sum);
  return std::sqrt(sum.item<double>());
}

void DataParallel::scale_grads(double factor) {
  torch::NoGradGuard no_grad;
  for (auto& g : owned_grads_) g.mul_(factor);
}

void DataParallel::gather_params() {
  if (options_.zero_stage == 0 || layout_.world_size() == 1) return;
  std::vector<WorkPtr> works;
  for (const auto& bucket : layout_.buckets())
    works.push_back(comm_.all_gather(flat_params_.narrow(0, bucket.begin, bucket.end - bucket.begin)));
  for (auto& w : works) w->wait();
}

MemoryUsage DataParallel::memory() const {
  MemoryUsage m;
  m.params = flat_params_.numel() * flat_params_.element_size();
  if (flat_grads_.defined()) m.grads = flat_grads_.numel() * flat_grads_.element_size();
  if (grad_shard_.defined())
    m.grads = grad_shard_.numel() * grad_shard_.element_size() + peak_staging_bytes_;
  return m;
}

MemoryUsage planned_memory(const FlatLayout& layout, int zero_stage, int64_t element_bytes) {
  MemoryUsage m;
  m.params = layout.total() * element_bytes;
  int64_t largest_bucket = 0;
  for (const auto& b : layout.buckets()) largest_bucket = std::max(largest_bucket, b.end - b.begin);
  const int64_t owned = zero_stage >= 1 ? layout.shard_elements() : layout.data_elements();
  // Stage 2 holds its shard, the buckets in flight with their received chunks, and
  // the bucket being filled.
  const auto in_flight = static_cast<int64_t>(DataParallel::kMaxInFlight);
  m.grads = zero_stage == 2 ? (layout.shard_elements() + (in_flight + 1) * largest_bucket +
                               in_flight * largest_bucket / layout.world_size()) *
                                  element_bytes
                            : layout.total() * element_bytes;
  m.optimizer = 2 * owned * 4;
  return m;
}

}  // namespace crsm::dist
