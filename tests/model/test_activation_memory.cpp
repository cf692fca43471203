// Activation checkpointing and the activation memory plan (SPEC §6): gradients with and
// without checkpointing agree, and the plan holds to what the CPU allocator measures.
#include <gtest/gtest.h>
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>
#include <ATen/autocast_mode.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

#include "config/run_config.h"
#include "model/activation_memory.h"
#include "model/autocast_state.h"
#include "model/backbone.h"
#include "model/cpu_kernels.h"
#include "test_helpers.h"

namespace activation_memory_test {

using crsm::model::Backbone;
using crsm::model::ModelConfig;

// Counts the bytes of live CPU tensors and the most there were at once. Its pointers are
// their own context, as LibTorch's CPU code expects.
class TrackingAllocator final : public c10::Allocator {
 public:
  explicit TrackingAllocator(c10::Allocator* inner) : inner_(inner) { free_ = inner->raw_deleter(); }

  c10::DataPtr allocate(size_t n) const override {
    void* data = inner_->raw_allocate(n);
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[data] = n;
    }
    const size_t now = (live_ += n);
    size_t seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
    return {data, data, &TrackingAllocator::release, c10::Device(c10::kCPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &TrackingAllocator::release; }

  static size_t live() { return live_; }
  static size_t peak() { return peak_; }
  static void restart_peak() { peak_ = live_.load(); }

  static void install() {
    static TrackingAllocator tracker(c10::GetCPUAllocator());
    static const bool once = (c10::SetCPUAllocator(&tracker, /*priority=*/100), true);
    (void)once;
  }

 private:
  static void release(void* data) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sizes_.find(data);
      if (it != sizes_.end()) {
        live_ -= it->second;
        sizes_.erase(it);
      }
    }
    free_(data);
  }

  c10::Allocator* inner_;
  static inline c10::DeleterFnPtr free_ = nullptr;
  static inline std::mutex mu_;
  static inline std::unordered_map<void*, size_t> sizes_;
  static inline std::atomic<size_t> live_{0}, peak_{0};
};

// As the trainer computes it: nothing but the loss outlives the forward pass.
at::Tensor lm_loss(Backbone& model, const at::Tensor& windows) {
  const int64_t T = windows.size(1) - 1;
  const auto logits = model->forward(windows.narrow(1, 0, T)).logits;
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), windows.narrow(1, 1, T).reshape(-1));
}

void step(Backbone& model, const at::Tensor& windows) { lm_loss(model, windows).backward(); }

// Parameter gradients of one step, with or without checkpointing, from the same seed.
std::vector<at::Tensor> gradients(ModelConfig cfg, bool checkpointing, uint64_t seed) {
  torch::manual_seed(1);
  Backbone model(cfg);
  model->train();
  model->set_activation_checkpointing(checkpointing);
  torch::manual_seed(seed);
  const auto windows = torch::randint(0, cfg.vocab_size, {3, 25}, torch::kLong);
  step(model, windows);
  std::vector<at::Tensor> grads;
  for (const auto& p : model->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  grads.push_back(torch::rand({4}));  // the random stream after the step goes on alike
  return grads;
}

TEST(ActivationCheckpointing, GradientsEqualThoseWithout) {
  for (const double dropout : {0.0, 0.2}) {
    ModelConfig cfg = crsm::testing::tiny_model_config();
    cfg.dropout = dropout;
    const auto plain = gradients(cfg, false, 5), recomputed = gradients(cfg, true, 5);
    ASSERT_EQ(plain.size(), recomputed.size());
    for (size_t i = 0; i < plain.size(); ++i)
      EXPECT_LE((plain[i] - recomputed[i]).abs().max().item<double>(), 1e-6) << "tensor " << i << ", dropout " << dropout;
  }
}

// A forward pass under bf16 autocast as the trainer runs it: an autocast region whose
// end drops the cast-weight cache.
class Bf16Forward {
 public:
  Bf16Forward() : autocast_(bf16()) { at::autocast::increment_nesting(); }
  ~Bf16Forward() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  }

 private:
  static crsm::model::AutocastState bf16() {
    auto s = crsm::model::AutocastState::current();
    s.cpu = true;
    s.cpu_dtype = c10::ScalarType::BFloat16;
    return s;
  }
  crsm::model::AutocastAs autocast_;
};

// A block recomputed in backward casts its weights to bf16 again, outside the forward's
// region; those casts must not outlive the step, or the next forward computes with the
// weights from before the update.
TEST(ActivationCheckpointing, UnderAutocastTheNextStepSeesTheUpdatedWeights) {
  // One thread: the linear layers run as LibTorch's own (split over threads they cast
  // nothing through autocast's cache).
  at::set_num_threads(1);
  const ModelConfig cfg = crsm::testing::tiny_model_config();
  const auto second_loss = [&](bool checkpointing) {
    torch::manual_seed(3);
    Backbone model(cfg);
    model->train();
    model->set_activation_checkpointing(checkpointing);
    const auto windows = torch::randint(0, cfg.vocab_size, {3, 25}, torch::kLong);
    at::Tensor loss;
    {
      const Bf16Forward region;
      loss = lm_loss(model, windows);
    }
    loss.backward();
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters())
        if (p.grad().defined()) p.sub_(0.05 * p.grad().sign());
    }
    const Bf16Forward region;  // recording, as training's next forward does
    return lm_loss(model, windows).item<double>();
  };
  EXPECT_NEAR(second_loss(true), second_loss(false), 1e-3);
}

// The most bytes above what was held before, over the forward pass, the loss and the
// backward pass of a step of `cfg` with `rows` x `seq_len` tokens. Measured on a second
// step, as training holds it: the gradients the first one made are there already.
double measured_activation_bytes(const ModelConfig& cfg, bool checkpointing, int64_t rows, int64_t seq_len) {
  TrackingAllocator::install();
  torch::manual_seed(2);
  Backbone model(cfg);
  model->train();
  model->set_activation_checkpointing(checkpointing);
  const auto windows = torch::randint(0, cfg.vocab_size, {rows, seq_len + 1}, torch::kLong);
  step(model, windows);
  const size_t before = TrackingAllocator::live();
  TrackingAllocator::restart_peak();
  step(model, windows);
  return static_cast<double>(TrackingAllocator::peak() - before);
}

// With the fused CPU convolution and with the plain one GPUs run.
TEST(ActivationMemory, ThePlanHoldsToTheMeasuredPeak) {
  using crsm::model::ConvKernel;
  at::set_num_threads(1);  // one thread's scratch, as the plan counts none
  for (const ConvKernel conv : {ConvKernel::kFused, ConvKernel::kPlain}) {
    crsm::model::set_fused_cpu_kernels(conv == ConvKernel::kFused);
    for (const char* name : {"tiny", "small"}) {
      const auto cfg = crsm::load_run_config(std::string(CRSM_SOURCE_DIR) + "/configs/" + name + ".json").model;
      for (const bool checkpointing : {false, true}) {
        const auto plan = crsm::model::activation_bytes(cfg, 4, 64, conv);
        const double planned = checkpointing ? plan.checkpointed : plan.full;
        const double measured = measured_activation_bytes(cfg, checkpointing, 4, 64);
        EXPECT_NEAR(planned / measured, 1.0, 0.15)
            << name << (checkpointing ? " checkpointed" : "") << (conv == ConvKernel::kPlain ? " plain" : " fused")
            << ": planned " << planned << ", measured " << measured;
      }
    }
  }
  crsm::model::set_fused_cpu_kernels(true);
}

// d_ffn = 0: each block keeps one norm and nothing of a feed-forward branch.
TEST(ActivationMemory, ThePlanHoldsWithoutTheFeedForwardBranch) {
  at::set_num_threads(1);
  auto cfg = crsm::load_run_config(std::string(CRSM_SOURCE_DIR) + "/configs/small.json").model;
  cfg.d_ffn = 0;
  for (const bool checkpointing : {false, true}) {
    const auto plan = crsm::model::activation_bytes(cfg, 4, 64, crsm::model::ConvKernel::kFused);
    const double planned = checkpointing ? plan.checkpointed : plan.full;
    const double measured = measured_activation_bytes(cfg, checkpointing, 4, 64);
    EXPECT_NEAR(planned / measured, 1.0, 0.15)
        << (checkpointing ? "checkpointed" : "full") << ": planned " << planned << ", measured " << measured;
  }
}

}  // namespace activation_memory_test
