#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>

#include "base/error.h"
#include "model/latent_dynamics.h"

namespace {

using crsm::model::DynamicsArch;
using crsm::model::DynamicsConfig;
using crsm::model::LatentDynamics;

const DynamicsArch kArchs[] = {DynamicsArch::kShared, DynamicsArch::kPerLayer, DynamicsArch::kMlp};

DynamicsConfig dynamics_config(DynamicsArch arch, int64_t L, int64_t D, int64_t hidden = 0) {
  DynamicsConfig c;
  c.arch = arch;
  c.num_layers = L;
  c.d_model = D;
  c.hidden = hidden;
  return c;
}

std::set<std::string> parameter_names(LatentDynamics& dynamics) {
  std::set<std::string> names;
  for (const auto& p : dynamics->named_parameters()) names.insert(p.key());
  return names;
}

TEST(LatentDynamics, ParsesArchitectureWords) {
  for (const auto arch : kArchs)
    EXPECT_EQ(crsm::model::parse_dynamics_arch(crsm::model::to_string(arch)), arch);
  EXPECT_EQ(crsm::model::to_string(DynamicsArch::kPerLayer), "per_layer");
  try {
    crsm::model::parse_dynamics_arch("gru");
    FAIL() << "no exception";
  } catch (const crsm::UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'gru'"), std::string::npos) << message;
    EXPECT_NE(message.find("shared, per_layer or mlp"), std::string::npos) << message;
  }
}

TEST(LatentDynamics, EveryArchitectureMapsStatesToDeltasAndStartsAtZero) {
  torch::manual_seed(1);
  const auto states = torch::randn({5, 3, 8});
  const auto action = torch::randn({5, 8});
  for (const auto arch : kArchs) {
    for (const int64_t hidden : {0, 12}) {
      LatentDynamics dynamics(dynamics_config(arch, 3, 8, hidden));
      const auto delta = dynamics->forward(states, action);
      EXPECT_EQ(delta.sizes(), states.sizes()) << to_string(arch);
      EXPECT_EQ(delta.abs().max().item<double>(), 0.0) << to_string(arch) << " hidden " << hidden;
      EXPECT_TRUE(torch::equal(dynamics->step(states, action), states)) << to_string(arch);
    }
  }
}

TEST(LatentDynamics, RejectsMismatchedShapes) {
  LatentDynamics dynamics(dynamics_config(DynamicsArch::kShared, 3, 8));
  EXPECT_THROW(dynamics->forward(torch::randn({5, 2, 8}), torch::randn({5, 8})), c10::Error);
  EXPECT_THROW(dynamics->forward(torch::randn({5, 3, 8}), torch::randn({4, 8})), c10::Error);
  EXPECT_THROW(dynamics->forward(torch::randn({5, 3, 8}), torch::randn({5, 7})), c10::Error);
}

// The names land in checkpoints and safetensors exports: they must not drift.
TEST(LatentDynamics, ParameterNamesAreStable) {
  LatentDynamics shared(dynamics_config(DynamicsArch::kShared, 3, 8));  // hidden = d_model: no state_proj
  EXPECT_EQ(parameter_names(shared),
            (std::set<std::string>{"gru.weight_ih", "gru.weight_hh", "gru.bias_ih", "gru.bias_hh", "delta_proj.weight",
                                   "layer_scale", "layer_gate", "layer_bias"}));
  LatentDynamics projected(dynamics_config(DynamicsArch::kShared, 3, 8, 4));
  EXPECT_EQ(parameter_names(projected).count("state_proj.weight"), 1u);
  EXPECT_EQ(parameter_names(projected).count("delta_proj.weight"), 1u);
  LatentDynamics per_layer(dynamics_config(DynamicsArch::kPerLayer, 3, 8, 6));
  EXPECT_EQ(parameter_names(per_layer),
            (std::set<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(per_layer->named_parameters()["fc1.weight"].sizes(), (std::vector<int64_t>{3, 6, 16}));
  EXPECT_EQ(per_layer->named_parameters()["fc2.weight"].sizes(), (std::vector<int64_t>{3, 8, 6}));
  LatentDynamics mlp(dynamics_config(DynamicsArch::kMlp, 3, 8));
  EXPECT_EQ(mlp->named_parameters()["fc1.weight"].sizes(), (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(mlp->named_parameters()["fc2.weight"].sizes(), (std::vector<int64_t>{8, 16}));
}

// The count a size check uses before any model is built is the model's own.
TEST(LatentDynamics, TheApproximateParameterCountIsExact) {
  for (const auto& cfg : {dynamics_config(DynamicsArch::kShared, 3, 8), dynamics_config(DynamicsArch::kShared, 3, 8, 4),
                          dynamics_config(DynamicsArch::kPerLayer, 3, 8, 6), dynamics_config(DynamicsArch::kMlp, 3, 8)}) {
    LatentDynamics model(cfg);
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    EXPECT_EQ(crsm::model::approximate_parameter_count(cfg), static_cast<double>(n)) << to_string(cfg.arch);
  }
  EXPECT_GT(crsm::model::approximate_parameter_count(dynamics_config(DynamicsArch::kShared, 2, 32, int64_t{1} << 24)),
            1e14);
}

// Perturbs every parameter so that no path through the model is zero.
void randomise(LatentDynamics& dynamics, double std) {
  torch::NoGradGuard no_grad;
  for (auto& p : dynamics->parameters()) p.normal_(0.0, std);
}

TEST(LatentDynamics, RolloutEqualsRepeatedSteps) {
  torch::manual_seed(2);
  const auto states = torch::randn({4, 3, 8});
  const auto actions = torch::randn({5, 4, 8});
  for (const auto arch : kArchs) {
    LatentDynamics dynamics(dynamics_config(arch, 3, 8));
    randomise(dynamics, 0.3);
    const auto trajectory = crsm::model::rollout(dynamics, states, actions);
    ASSERT_EQ(trajectory.sizes(), (std::vector<int64_t>{5, 4, 3, 8}));
    auto expected = states;
    for (int64_t k = 0; k < 5; ++k) {
      expected = dynamics->step(expected, actions[k]);
      EXPECT_TRUE(torch::equal(trajectory[k], expected)) << to_string(arch) << " step " << k;
    }
    EXPECT_EQ(crsm::model::rollout(dynamics, states, actions.narrow(0, 0, 0)).size(0), 0);
  }
}

// Central finite differences in double precision against autograd, for the inputs and
// every parameter.
TEST(LatentDynamics, ForwardPassesDoubleGradCheck) {
  torch::manual_seed(3);
  for (const auto arch : kArchs) {
    for (const int64_t hidden : {0, 4}) {
      LatentDynamics dynamics(dynamics_config(arch, 2, 3, hidden));
      dynamics->to(torch::kDouble);
      randomise(dynamics, 0.7);
      auto states = torch::randn({2, 2, 3}, torch::kDouble).requires_grad_(true);
      auto action = torch::randn({2, 3}, torch::kDouble).requires_grad_(true);
      const auto weights = torch::randn({2, 2, 3}, torch::kDouble);
      auto loss = [&] { return (dynamics->forward(states, action) * weights).sum(); };
      loss().backward();
      std::vector<std::pair<std::string, torch::Tensor>> checked = {{"states", states},
                                                                    {"action_emb", action}};
      for (const auto& p : dynamics->named_parameters()) checked.emplace_back(p.key(), p.value());
      torch::NoGradGuard no_grad;
      const double eps = 1e-6;
      for (auto& [name, tensor] : checked) {
        ASSERT_TRUE(tensor.grad().defined()) << name;
        const auto analytic = tensor.grad().reshape(-1);
        auto flat = tensor.view(-1);
        for (int64_t k = 0; k < flat.numel(); ++k) {
          const double saved = flat[k].item<double>();
          flat[k] = saved + eps;
          const double up = loss().item<double>();
          flat[k] = saved - eps;
          const double down = loss().item<double>();
          flat[k] = saved;
          const double numeric = (up - down) / (2 * eps);
          EXPECT_NEAR(analytic[k].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
              << to_string(arch) << " hidden " << hidden << " d/d" << name << "[" << k << "]";
        }
      }
    }
  }
}

// Known systems Δh_l = f(h, a) to recover: h ~ N(0, 1), actions from a small vocabulary
// with fixed random embeddings at the backbone's scale.
struct LinearSystem {
  int64_t L = 3, D = 16, vocab = 8;
  torch::Tensor embeddings;         // [vocab, D]
  torch::Tensor A;                  // [L, D, D]: A_l
  torch::Tensor U;                  // [D, D]
  torch::Tensor M;                  // [D, D]: acts on the layer mean (the shared form)
  torch::Tensor scale, gate, bias;  // [L, D]: the shared form's per-layer terms
};

LinearSystem make_system() {
  LinearSystem s;
  const double fan_in = std::sqrt(static_cast<double>(s.D));
  s.embeddings = torch::randn({s.vocab, s.D}) * 0.02;
  s.A = torch::randn({s.L, s.D, s.D}) * (0.5 / fan_in);  // A_l h_l: std 0.5 per feature
  s.U = torch::randn({s.D, s.D}) * (1.0 / fan_in / 0.02);  // U e(a): std 1
  s.M = torch::randn({s.D, s.D}) * (0.3 / fan_in);
  s.scale = 1.0 + torch::rand({s.L, s.D});
  s.gate = torch::randn({s.L, s.D}) * 0.3;
  s.bias = torch::randn({s.L, s.D}) * 0.3;
  return s;
}

struct Transitions {
  torch::Tensor states, action_emb, delta;
};
using SystemFn = torch::Tensor (*)(const LinearSystem&, const Transitions&);

Transitions sample(const LinearSystem& s, SystemFn system, int64_t batch) {
  Transitions t;
  t.states = torch::randn({batch, s.L, s.D});
  t.action_emb = s.embeddings.index_select(0, torch::randint(0, s.vocab, {batch}, torch::kLong));
  t.delta = system(s, t);
  return t;
}

// Δh_l = A_l h_l + U e(a): a different matrix per layer.
torch::Tensor general_delta(const LinearSystem& s, const Transitions& b) {
  return torch::einsum("lij,blj->bli", {s.A, b.states}) +
         torch::matmul(b.action_emb, s.U.t()).unsqueeze(1);
}

// Δh_l = A_0 h_l + U e(a): one matrix for all layers. `mlp` sees [h_l ; e(a)] alone, not
// which layer it is at, so this is what it can represent.
torch::Tensor layer_shared_delta(const LinearSystem& s, const Transitions& b) {
  return torch::matmul(b.states, s.A[0].t()) + torch::matmul(b.action_emb, s.U.t()).unsqueeze(1);
}

// Δh_l = s_l ⊙ (M mean_l(h) + 0.3 U e(a)) + d_l ⊙ h_l + b_l: what `shared` can represent,
// with the global part small enough for the GRU's tanh to stay near its linear range.
torch::Tensor mean_field_delta(const LinearSystem& s, const Transitions& b) {
  const auto global = torch::matmul(b.states.mean(1), s.M.t()) +
                      0.3 * torch::matmul(b.action_emb, s.U.t());
  return s.scale * global.unsqueeze(1) + s.gate * b.states + s.bias;
}

// 1 - SSE / SST, SST around each feature's mean over the batch.
double r_squared(const torch::Tensor& predicted, const torch::Tensor& truth) {
  const double sse = (predicted - truth).pow(2).sum().item<double>();
  const double sst = (truth - truth.mean(0, true)).pow(2).sum().item<double>();
  return 1.0 - sse / sst;
}

// Trains on 400 fresh batches with Adam and returns R² on a held-out batch.
double fit(DynamicsArch arch, const LinearSystem& s, SystemFn system) {
  LatentDynamics dynamics(dynamics_config(arch, s.L, s.D));
  torch::optim::Adam opt(dynamics->parameters(), torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 400; ++step) {
    const auto batch = sample(s, system, 128);
    opt.zero_grad();
    torch::mse_loss(dynamics->forward(batch.states, batch.action_emb), batch.delta).backward();
    opt.step();
  }
  torch::NoGradGuard no_grad;
  const auto held_out = sample(s, system, 2048);
  return r_squared(dynamics->forward(held_out.states, held_out.action_emb), held_out.delta);
}

TEST(LatentDynamics, RecoversSyntheticLinearSystems) {
  torch::manual_seed(4);
  const auto s = make_system();
  const double per_layer = fit(DynamicsArch::kPerLayer, s, general_delta);
  const double mlp = fit(DynamicsArch::kMlp, s, layer_shared_delta);
  const double shared = fit(DynamicsArch::kShared, s, mean_field_delta);
  const double shared_general = fit(DynamicsArch::kShared, s, general_delta);
  EXPECT_GE(per_layer, 0.95) << "per_layer on Δh_l = A_l h_l + U e(a)";
  EXPECT_GE(mlp, 0.95) << "mlp on Δh_l = A h_l + U e(a)";
  EXPECT_GE(shared, 0.95) << "shared on its own form";
  // U e(a) carries 1 of the 1.25 units of variance per feature and A_l h_l the rest, of
  // which a mean-field model captures little: about 0.8 is the ceiling, 0 an action ignored.
  EXPECT_GE(shared_general, 0.7) << "shared on Δh_l = A_l h_l + U e(a)";
}

}  // namespace
