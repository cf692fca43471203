#include "dist/data_parallel.h"

#include <ATen/record_function.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace crsm::dist {

struct DataParallel::BucketState {
  int pending = 0;     // gradients still to arrive this backward
  bool ready = false;  // every gradient arrived
  WorkPtr work;
};

// How a step's gradients are reduced across ranks and where the averaged ones live.
class DataParallel::Gradients {
 public:
  virtual ~Gradients() = default;
  // Whether each micro-batch is reduced as its backward runs (nothing accumulates in
  // full locally) rather than only the last one.
  virtual bool reduces_every_micro_batch() const = 0;
  // Reductions that may be in flight at once.
  virtual size_t max_in_flight() const = 0;
  virtual void zero() = 0;
  // `param`'s gradient for this micro-batch is complete: take what falls in its buckets.
  virtual void take(const FlatParam& param, at::Tensor& tensor) = 0;
  virtual WorkPtr launch(size_t bucket) = 0;
  // After the bucket's reduction has finished.
  virtual void retire(size_t bucket) = 0;
  // The averaged gradient of a segment this rank owns.
  virtual at::Tensor owned(const Segment& segment) = 0;
  virtual int64_t bytes() const = 0;  // peak held
};

namespace {

// Reduction::kAllReduce: gradients accumulate into one flat buffer (the parameters'
// .grad are views of it) and each bucket is all-reduced in place.
class AllReducedGradients final : public DataParallel::Gradients {
 public:
  AllReducedGradients(const FlatLayout& layout, std::vector<at::Tensor>& params, Communicator& comm)
      : layout_(layout), comm_(comm) {
    flat_ = torch::zeros({layout.total()}, params[0].options().requires_grad(false));
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& fp = layout.params()[i];
      params[i].mutable_grad() = flat_.narrow(0, fp.offset, fp.info.numel()).view(params[i].sizes());
    }
  }
  bool reduces_every_micro_batch() const override { return false; }
  size_t max_in_flight() const override { return std::numeric_limits<size_t>::max(); }
  void zero() override { flat_.zero_(); }
  void take(const FlatParam&, at::Tensor&) override {}
  WorkPtr launch(size_t b) override {
    const auto& bucket = layout_.buckets()[b];
    auto view = flat_.narrow(0, bucket.begin, bucket.end - bucket.begin);
    view.mul_(1.0 / layout_.world_size());
    return comm_.all_reduce(view, ReduceOp::kSum);
  }
  void retire(size_t) override {}
  at::Tensor owned(const Segment& seg) override { return flat_.narrow(0, seg.flat_offset, seg.length); }
  int64_t bytes() const override { return flat_.numel() * flat_.element_size(); }

 private:
  const FlatLayout& layout_;
  Communicator& comm_;
  at::Tensor flat_;
};

// Reduction::kReduceScatter: a rank keeps only its chunk of every bucket (the shard). A
// bucket's full gradient is staged while it is reduced, then dropped; so are the
// parameters' .grad once copied. At most kMaxInFlight reductions are outstanding, which
// bounds the staging memory (MPI only progresses inside MPI calls, so waiting is what
// retires them).
class ReduceScatteredGradients final : public DataParallel::Gradients {
 public:
  ReduceScatteredGradients(const FlatLayout& layout, std::vector<at::Tensor>& params, Communicator& comm)
      : layout_(layout), comm_(comm), params_(params), options_(params[0].options().requires_grad(false)),
        staging_(layout.buckets().size()), received_(layout.buckets().size()) {
    shard_ = torch::zeros({layout.shard_elements()}, options_);
  }
  bool reduces_every_micro_batch() const override { return true; }
  size_t max_in_flight() const override { return DataParallel::kMaxInFlight; }
  void zero() override {
    shard_.zero_();
    for (auto& p : params_) p.mutable_grad() = at::Tensor();
  }
  void take(const FlatParam& fp, at::Tensor& tensor) override {
    if (tensor.grad().defined()) {
      for (int b = fp.first_bucket; b <= fp.last_bucket; ++b) {
        const auto& bucket = layout_.buckets()[static_cast<size_t>(b)];
        const int64_t lo = std::max(bucket.begin, fp.offset);
        const int64_t hi = std::min(bucket.data_end, fp.offset + fp.info.numel());
        staged(static_cast<size_t>(b)).narrow(0, lo - bucket.begin, hi - lo)
            .copy_(tensor.grad().reshape(-1).narrow(0, lo - fp.offset, hi - lo));
      }
    }
    tensor.mutable_grad() = at::Tensor();
  }
  WorkPtr launch(size_t b) override {
    auto& staging = staged(b);
    staging.mul_(1.0 / layout_.world_size());
    received_[b] = allocate(layout_.buckets()[b].chunk(layout_.world_size()));
    return comm_.reduce_scatter(staging, received_[b]);
  }
  // Accumulates over micro-batches: each one's reduced chunk adds to the shard.
  void retire(size_t b) override {
    shard_.narrow(0, layout_.shard_offset(static_cast<int>(b)), received_[b].numel()).add_(received_[b]);
    release(staging_[b]);
    release(received_[b]);
  }
  at::Tensor owned(const Segment& seg) override {
    return shard_.narrow(0, layout_.shard_position(seg, comm_.rank()), seg.length);
  }
  int64_t bytes() const override { return shard_.numel() * shard_.element_size() + peak_staging_; }

 private:
  at::Tensor& staged(size_t b) {
    if (!staging_[b].defined()) staging_[b] = allocate(layout_.buckets()[b].end - layout_.buckets()[b].begin);
    return staging_[b];
  }
  at::Tensor allocate(int64_t elements) {
    auto t = torch::zeros({elements}, options_);
    staging_bytes_ += elements * t.element_size();
    peak_staging_ = std::max(peak_staging_, staging_bytes_);
    return t;
  }
  void release(at::Tensor& t) {
    if (!t.defined()) return;
    staging_bytes_ -= t.numel() * t.element_size();
    t = at::Tensor();
  }

  const FlatLayout& layout_;
  Communicator& comm_;
  std::vector<at::Tensor>& params_;
  at::TensorOptions options_;
  at::Tensor shard_;  // this rank's chunks of every bucket, in bucket order
  std::vector<at::Tensor> staging_, received_;
  int64_t staging_bytes_ = 0, peak_staging_ = 0;
};

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
                           DataParallelOptions options, const std::vector<int>& units)
    : comm_(comm),
      options_(options),
      policy_(options.zero),
      layout_(zero_layout(
          [&] {
            if (policy_.sharded_parameters() && units.size() != params.size())
              throw std::invalid_argument("data parallel: zero stage 3 needs the gathering unit of every parameter");
            std::vector<ParamInfo> infos;
            for (size_t i = 0; i < params.size(); ++i)
              infos.push_back({params[i].first, params[i].second.sizes().vec(), decay.at(i),
                               units.empty() ? 0 : units.at(i)});
            return infos;
          }(),
          comm.world_size(),
          std::max<int64_t>(1, options.bucket_bytes / (params.empty() ? 4 : params[0].second.element_size())),
          options.zero)),
      element_bytes_(params.empty() ? 4 : params[0].second.element_size()) {
  if (params.empty()) throw std::invalid_argument("data parallel: no trainable parameters");
  const bool scattered = policy_.sharded_gradients();
  if (options_.reduce_after_backward && scattered)
    throw std::invalid_argument("reduce_after_backward is a baseline for all-reduced gradients only");
  torch::NoGradGuard no_grad;
  // Layout order is reverse registration order.
  for (const auto& fp : layout_.params()) {
    auto it = std::find_if(params.begin(), params.end(),
                           [&](const auto& p) { return p.first == fp.info.name; });
    model_params_.push_back(it->second);
  }
  if (policy_.sharded_parameters()) {
    sharded_ = std::make_unique<ShardedParameters>(layout_, model_params_, comm_, options_.prefetch);
  } else {
    flat_params_ = torch::zeros({layout_.total()}, params[0].second.options().requires_grad(false));
    for (size_t i = 0; i < model_params_.size(); ++i) {
      const auto& fp = layout_.params()[i];
      auto view = flat_params_.narrow(0, fp.offset, fp.info.numel());
      view.copy_(model_params_[i].reshape(-1));
      model_params_[i].set_data(view.view(model_params_[i].sizes()));
    }
    comm_.broadcast(flat_params_, 0)->wait();
  }

  if (scattered) gradients_ = std::make_unique<ReduceScatteredGradients>(layout_, model_params_, comm_);
  else gradients_ = std::make_unique<AllReducedGradients>(layout_, model_params_, comm_);
  segments_ = layout_.owned_segments(comm_.rank(), policy_.sharded_optimizer());
  for (const auto& seg : segments_) {
    owned_params_.push_back(sharded_ ? sharded_->owned(seg) : flat_params_.narrow(0, seg.flat_offset, seg.length));
    owned_grads_.push_back(gradients_->owned(seg));
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
  gradients_->zero();
  // The update has changed the shard: a unit a forward prefetched and never used
  // (latents() stops before the head) would bring back the old values.
  if (sharded_) sharded_->release_all();
}

void DataParallel::begin_micro_batch(bool last) {
  syncing_ = last || gradients_->reduces_every_micro_batch();
  next_launch_ = 0;
  retired_ = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b]->pending = static_cast<int>(layout_.buckets()[b].params.size());
    buckets_[b]->ready = false;
  }
}

void DataParallel::on_gradient_ready(int param) {
  if (!syncing_) return;
  torch::NoGradGuard no_grad;
  const auto& fp = layout_.params()[static_cast<size_t>(param)];
  gradients_->take(fp, model_params_[static_cast<size_t>(param)]);
  for (int b = fp.first_bucket; b <= fp.last_bucket; ++b) {
    if (--buckets_[static_cast<size_t>(b)]->pending > 0) continue;
    buckets_[static_cast<size_t>(b)]->ready = true;
    if (sharded_) sharded_->gradients_taken(b);
  }
  launch_ready_in_order();
  poll_in_flight();
}

void DataParallel::launch_ready_in_order() {
  torch::NoGradGuard no_grad;
  // Every rank must issue collectives in the same order, whatever order hooks fire in.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->ready) {
    RECORD_USER_SCOPE("crsm::bucket_reduce");  // the profiler's range (--profile-steps)
    buckets_[next_launch_]->work = gradients_->launch(next_launch_);
    ++next_launch_;
    while (next_launch_ - retired_ > gradients_->max_in_flight()) retire(retired_++);
  }
}

void DataParallel::retire(size_t b) {
  RECORD_USER_SCOPE("crsm::bucket_wait");
  torch::NoGradGuard no_grad;
  auto& state = *buckets_[b];
  if (state.work) state.work->wait();
  state.work.reset();
  gradients_->retire(b);
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
  if (sharded_) sharded_->release_all();
  syncing_ = false;
}

double DataParallel::grad_norm() {
  torch::NoGradGuard no_grad;
  // Summed where the gradients live and read once: on a GPU each read is a sync.
  const auto device = owned_grads_.empty() ? comm_.device() : owned_grads_.front().device();
  auto sum = torch::zeros({1}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  for (const auto& g : owned_grads_) sum += g.to(torch::kDouble).pow(2).sum();
  if (policy_.sharded_optimizer()) all_reduce_now(comm_, sum);
  return std::sqrt(sum.item<double>());
}

void DataParallel::scale_grads(double factor) {
  torch::NoGradGuard no_grad;
  for (auto& g : owned_grads_) g.mul_(factor);
}

void DataParallel::gather_params() {
  if (!policy_.gathers_after_update() || layout_.world_size() == 1) return;
  std::vector<WorkPtr> works;
  for (const auto& bucket : layout_.buckets())
    works.push_back(comm_.all_gather(flat_params_.narrow(0, bucket.begin, bucket.end - bucket.begin)));
  for (auto& w : works) w->wait();
}

MemoryUsage DataParallel::memory() const {
  const int64_t params = sharded_ ? sharded_->shard_bytes() + sharded_->peak_gathered_bytes()
                                  : flat_params_.numel() * flat_params_.element_size();
  return {params, gradients_->bytes(), 0};
}

double DataParallel::analytic_bytes_per_step(int micro_batches) const {
  return dist::analytic_bytes_per_step(policy_, static_cast<double>(layout_.total() * element_bytes_),
                                       layout_.world_size(), micro_batches);
}

FlatLayout zero_layout(std::vector<ParamInfo> params, int world_size, int64_t bucket_elements, const ZeroPolicy& zero) {
  if (!zero.sharded_parameters())
    for (auto& p : params) p.unit = 0;
  return FlatLayout(params, world_size, bucket_elements);
}

MemoryUsage planned_memory(const FlatLayout& layout, const ZeroPolicy& policy, int64_t element_bytes) {
  MemoryUsage m;
  int64_t largest_bucket = 0;
  for (const auto& b : layout.buckets()) largest_bucket = std::max(largest_bucket, b.end - b.begin);
  std::vector<int64_t> units;
  for (size_t u = 0; u < layout.units().size(); ++u) units.push_back(layout.unit_elements(static_cast<int>(u)));
  std::sort(units.rbegin(), units.rend());
  const int64_t gathered = std::accumulate(units.begin(), units.begin() + std::min<size_t>(3, units.size()), int64_t{0});
  m.params = (policy.sharded_parameters() ? layout.shard_elements() + gathered : layout.total()) * element_bytes;
  const bool sharded = policy.sharded_optimizer();
  const int64_t owned = sharded ? layout.shard_elements() : layout.data_elements();
  // Reduce-scatter holds the shard, the buckets in flight with their received chunks,
  // and the bucket being filled.
  const auto in_flight = static_cast<int64_t>(DataParallel::kMaxInFlight);
  m.grads = policy.sharded_gradients()
                ? (layout.shard_elements() + (in_flight + 1) * largest_bucket +
                   in_flight * largest_bucket / layout.world_size()) *
                      element_bytes
                : layout.total() * element_bytes;
  m.optimizer = 2 * owned * 4;
  return m;
}

}  // namespace crsm::dist
