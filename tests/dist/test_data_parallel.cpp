// DataParallel on one process (the local communicator): the flat buffers, hooks and
// shards must leave training exactly as plain autograd would.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <optional>

#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "model/unit_hooks.h"
#include "train/unit_gathering.h"

namespace {

using namespace crsm::dist;

struct TinyNet {
  torch::Tensor w1 = torch::randn({6, 5}).requires_grad_(true);
  torch::Tensor b1 = torch::randn({6}).requires_grad_(true);
  torch::Tensor w2 = torch::randn({3, 6}).requires_grad_(true);
  // Two units as a model announces them: (w1, b1) and w2.
  torch::Tensor loss(const torch::Tensor& x, crsm::model::UnitHooks* hooks = nullptr) const {
    torch::Tensor h, out;
    {
      const crsm::model::UnitUse use(hooks, {0});
      h = use.mark(torch::tanh(x.matmul(w1.t()) + b1));
    }
    {
      const crsm::model::UnitUse use(hooks, {1});
      out = use.mark(h.matmul(w2.t()));
    }
    return out.pow(2).mean();
  }
  std::vector<std::pair<std::string, at::Tensor>> named() const {
    return {{"w1", w1}, {"b1", b1}, {"w2", w2}};
  }
};

TEST(DataParallel, GradientsInTheFlatBuffersEqualPlainAutograd) {
  for (int stage : {0, 1, 2, 3}) {
    torch::manual_seed(11);
    TinyNet plain;
    TinyNet wrapped{plain.w1.detach().clone().requires_grad_(true),
                    plain.b1.detach().clone().requires_grad_(true),
                    plain.w2.detach().clone().requires_grad_(true)};
    auto comm = make_local_communicator();
    DataParallelOptions options;
    options.zero = ZeroPolicy::for_stage(stage);
    options.bucket_bytes = 64;  // several buckets for three small tensors
    DataParallel dp(wrapped.named(), {true, false, true}, *comm, options, {0, 0, 1});
    EXPECT_GT(dp.layout().buckets().size(), 1u);
    std::optional<crsm::train::UnitGathering> gathering;
    if (dp.sharded_parameters()) gathering.emplace(*dp.sharded_parameters());
    crsm::model::UnitHooks* hooks = gathering ? &*gathering : nullptr;

    const auto x1 = torch::randn({4, 5}), x2 = torch::randn({4, 5});
    (plain.loss(x1) / 2).backward();
    (plain.loss(x2) / 2).backward();
    dp.zero_grad();
    for (int k = 0; k < 2; ++k) {
      dp.begin_micro_batch(k == 1);
      (wrapped.loss(k == 0 ? x1 : x2, hooks) / 2).backward();
      dp.end_micro_batch();
    }
    // Owned segments cover every parameter; compare each piece with the plain gradient.
    const std::map<std::string, torch::Tensor> expected = {
        {"w1", plain.w1.grad()}, {"b1", plain.b1.grad()}, {"w2", plain.w2.grad()}};
    int64_t covered = 0;
    for (size_t i = 0; i < dp.owned_segments().size(); ++i) {
      const auto& seg = dp.owned_segments()[i];
      const auto& name = dp.layout().params()[static_cast<size_t>(seg.param)].info.name;
      const auto want = expected.at(name).reshape(-1).narrow(0, seg.param_offset, seg.length);
      EXPECT_TRUE(torch::allclose(dp.owned_grads()[i], want, 1e-6, 1e-7)) << name << " stage " << stage;
      covered += seg.length;
    }
    EXPECT_EQ(covered, 30 + 6 + 18);
    const double norm = std::sqrt(plain.w1.grad().pow(2).sum().item<double>() +
                                  plain.b1.grad().pow(2).sum().item<double>() +
                                  plain.w2.grad().pow(2).sum().item<double>());
    EXPECT_NEAR(dp.grad_norm(), norm, 1e-5 * norm);
    // Stages 2/3 keep no full gradient on the parameters; stages 0/1 keep views of the buffer.
    EXPECT_EQ(wrapped.w1.grad().defined(), stage < 2) << stage;
  }
}

// Stage 3: a unit's parameters hold storage only between its gather and its release,
// and an update of the shard is what the next gather brings.
TEST(DataParallel, StageThreeHoldsAUnitsParametersOnlyWhileInUse) {
  for (const bool prefetch : {false, true}) {
    torch::manual_seed(12);
    TinyNet net;
    const auto w1 = net.w1.detach().clone(), w2 = net.w2.detach().clone();
    auto comm = make_local_communicator();
    DataParallelOptions options;
    options.zero = ZeroPolicy::for_stage(3);
    options.prefetch = prefetch;
    DataParallel dp(net.named(), {true, false, true}, *comm, options, {0, 0, 1});
    auto& sharded = *dp.sharded_parameters();
    const auto held = [](const torch::Tensor& t) { return t.storage().nbytes() > 0; };
    EXPECT_FALSE(held(net.w1));
    EXPECT_FALSE(held(net.w2));
    sharded.enter_forward(0);
    EXPECT_TRUE(torch::equal(net.w1, w1));
    EXPECT_EQ(held(net.w2), prefetch);  // the next unit is on its way
    sharded.leave_forward(0);
    EXPECT_FALSE(held(net.w1));
    // The optimizer updates the shard between steps, when nothing is gathered.
    dp.zero_grad();
    EXPECT_FALSE(held(net.w2));
    for (const auto& p : dp.owned_params()) p.add_(1.0);
    sharded.enter_forward(1);
    EXPECT_TRUE(torch::equal(net.w2, w2 + 1.0));
    sharded.release_all();
    EXPECT_FALSE(held(net.w2));
    // The shard (54 elements) and, at the peak, one unit (w1 with b1: 36) or two.
    EXPECT_EQ(dp.memory().params, (54 + (prefetch ? 36 + 18 : 36)) * 4);
    EXPECT_LE(dp.memory().params, planned_memory(dp.layout(), ZeroPolicy::for_stage(3), 4).params);
  }
}

// Stage 2 must not hold the whole gradient at once: buckets are retired as their
// reductions finish, so the peak is a few buckets, whatever the number of buckets.
TEST(DataParallel, StageTwoHoldsOnlyAFewBucketsOfFullGradient) {
  torch::manual_seed(13);
  std::vector<torch::Tensor> layers;
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (int i = 0; i < 12; ++i) {
    layers.push_back((torch::randn({8, 8}) * 0.3).requires_grad_(true));
    named.emplace_back("layer" + std::to_string(i), layers.back());
  }
  auto comm = make_local_communicator();
  DataParallelOptions options;
  options.zero = ZeroPolicy::for_stage(2);
  options.bucket_bytes = 64 * 4;  // one 8x8 layer per bucket
  DataParallel dp(named, std::vector<bool>(12, true), *comm, options);
  ASSERT_EQ(dp.layout().buckets().size(), 12u);
  dp.zero_grad();
  dp.begin_micro_batch(true);
  auto h = torch::randn({4, 8});
  for (const auto& w : layers) h = torch::tanh(h.matmul(w));
  h.pow(2).sum().backward();
  dp.end_micro_batch();
  const int64_t bucket_bytes = 64 * 4, shard_bytes = 12 * bucket_bytes;
  const auto used = dp.memory();
  EXPECT_GT(used.grads, shard_bytes);
  EXPECT_LE(used.grads, shard_bytes + 5 * bucket_bytes) << "peak staging of " << used.grads - shard_bytes
                                                        << " bytes for 12 buckets";
  EXPECT_LE(used.grads, planned_memory(dp.layout(), ZeroPolicy::for_stage(2), 4).grads);
}

TEST(DataParallel, ModelParametersBecomeViewsOfTheFlatBuffer) {
  torch::manual_seed(12);
  TinyNet net;
  const auto before = net.w2.detach().clone();
  auto comm = make_local_communicator();
  DataParallel dp(net.named(), {true, false, true}, *comm, {});
  EXPECT_TRUE(torch::equal(net.w2, before));
  // An update through the owned views is what the model computes with next.
  for (const auto& p : dp.owned_params()) p.add_(1.0);
  EXPECT_TRUE(torch::equal(net.w2, before + 1.0));
}

// A parameter that gets no gradient holds back the launch of the buckets after it; the
// units whose gradients are all taken must still be released as backward goes.
TEST(DataParallel, StageThreeReleasesAUnitOnceItsGradientsAreTaken) {
  torch::manual_seed(14);
  TinyNet net;
  auto unused = torch::randn({4}).requires_grad_(true);  // last registered: first in the layout
  auto named = net.named();
  named.emplace_back("unused", unused);
  auto comm = make_local_communicator();
  DataParallelOptions options;
  options.zero = ZeroPolicy::for_stage(3);
  DataParallel dp(named, {true, false, true, false}, *comm, options, {0, 0, 1, 2});
  crsm::train::UnitGathering gathering(*dp.sharded_parameters());
  dp.zero_grad();
  dp.begin_micro_batch(true);
  net.loss(torch::randn({4, 5}), &gathering).backward();
  EXPECT_EQ(net.w2.storage().nbytes(), 0u) << "w2's unit stayed gathered after its backward";
  EXPECT_EQ(net.w1.storage().nbytes(), 0u) << "w1's unit stayed gathered after its backward";
  dp.end_micro_batch();
}

// A communicator whose all-gathers never complete: wait() throws, as after a peer stopped.
class StalledGathers final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "stalled"; }
  at::Device device() const override { return at::kCPU; }
  WorkPtr all_reduce(at::Tensor, ReduceOp) override { return done(); }
  WorkPtr reduce_scatter(at::Tensor in, at::Tensor out) override {
    out.copy_(in);
    return done();
  }
  WorkPtr all_gather(at::Tensor) override { return std::make_shared<Stalled>(); }
  WorkPtr broadcast(at::Tensor, int) override { return done(); }
  void barrier() override {}

 private:
  struct Done final : Work {
    void wait() override {}
    bool poll() override { return true; }
  };
  struct Stalled final : Work {
    void wait() override { throw CommTimeout("all_gather: not complete (a peer stopped)"); }
    bool poll() override { return false; }
  };
  static WorkPtr done() { return std::make_shared<Done>(); }
};

// The gather's first bucket times out; the others are still in flight when the shards
// are destroyed while the exception unwinds: that must end in the error, not in
// std::terminate.
TEST(DataParallel, StageThreeUnwindsFromAGatherThatTimedOut) {
  torch::manual_seed(15);
  TinyNet net;
  StalledGathers comm;
  DataParallelOptions options;
  options.zero = ZeroPolicy::for_stage(3);
  options.bucket_bytes = 32;  // several buckets per unit
  EXPECT_THROW(
      {
        DataParallel dp(net.named(), {true, false, true}, comm, options, {0, 0, 1});
        EXPECT_GT(dp.layout().units()[0].last_bucket, dp.layout().units()[0].first_bucket);
        dp.sharded_parameters()->enter_forward(0);
      },
      CommTimeout);
}

TEST(DataParallel, RejectsAnUnknownZeroStageAndStageThreeWithoutUnits) {
  TinyNet net;
  auto comm = make_local_communicator();
  DataParallelOptions options;
  EXPECT_THROW(options.zero = ZeroPolicy::for_stage(4), std::invalid_argument);
  options.zero = ZeroPolicy::for_stage(3);
  EXPECT_THROW(DataParallel(net.named(), {true, false, true}, *comm, options), std::invalid_argument);
}

// A stage is a combination of two policies, decided in one place.
TEST(ZeroPolicy, EachStageIsAReductionAndAnOwnership) {
  using crsm::dist::ZeroPolicy;
  EXPECT_FALSE(ZeroPolicy::for_stage(0).sharded_gradients());
  EXPECT_FALSE(ZeroPolicy::for_stage(0).sharded_optimizer());
  EXPECT_FALSE(ZeroPolicy::for_stage(1).sharded_gradients());
  EXPECT_TRUE(ZeroPolicy::for_stage(1).sharded_optimizer());
  EXPECT_TRUE(ZeroPolicy::for_stage(2).sharded_gradients());
  EXPECT_TRUE(ZeroPolicy::for_stage(2).sharded_optimizer());
  EXPECT_FALSE(ZeroPolicy::for_stage(2).sharded_parameters());
  EXPECT_TRUE(ZeroPolicy::for_stage(3).sharded_gradients());
  EXPECT_TRUE(ZeroPolicy::for_stage(3).sharded_parameters());
  EXPECT_FALSE(ZeroPolicy::for_stage(3).gathers_after_update());
  EXPECT_TRUE(ZeroPolicy::for_stage(1).gathers_after_update());
  EXPECT_THROW(ZeroPolicy::for_stage(4), std::invalid_argument);
}

// Ring volumes per rank for P bytes on W = 4 ranks, 2 micro-batches: all-reduce 2 * 3/4 P
// once; stage 1 adds an all-gather (3/4 P); stage 2 reduce-scatters every micro-batch
// and gathers once; stage 3 reduce-scatters and gathers twice every micro-batch.
TEST(ZeroPolicy, AnalyticVolumePerStep) {
  using crsm::dist::ZeroPolicy;
  const double p = 1000;
  EXPECT_DOUBLE_EQ(analytic_bytes_per_step(ZeroPolicy::for_stage(0), p, 4, 2), 1500);
  EXPECT_DOUBLE_EQ(analytic_bytes_per_step(ZeroPolicy::for_stage(1), p, 4, 2), 2250);
  EXPECT_DOUBLE_EQ(analytic_bytes_per_step(ZeroPolicy::for_stage(2), p, 4, 2), 2250);
  EXPECT_DOUBLE_EQ(analytic_bytes_per_step(ZeroPolicy::for_stage(3), p, 4, 2), 4500);
  EXPECT_DOUBLE_EQ(analytic_bytes_per_step(ZeroPolicy::for_stage(3), p, 1, 2), 0);
}

}  // namespace
