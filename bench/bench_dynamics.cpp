// Latent dynamics against the backbone (SPEC §4): one recurrent backbone step against one
// dynamics step of each architecture, same model shape and batch, same run. The SPEC
// requires the default arch (shared) to cost at most 1/10 of a backbone step.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "bench_timing.h"
#include "config/run_config.h"
#include "dist/cpu_setup.h"
#include "model/backbone.h"
#include "model/latent_dynamics.h"

namespace {

using crsm::model::DynamicsArch;

using crsm::bench::seconds_per_call;

double million_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n / 1e6;
}

const DynamicsArch kArchs[] = {DynamicsArch::kShared, DynamicsArch::kPerLayer, DynamicsArch::kMlp};

void bench_config(const std::string& path, const std::vector<int>& thread_counts) {
  const auto cfg = crsm::load_run_config(path);
  torch::manual_seed(0);
  crsm::model::Backbone backbone(cfg.model);
  backbone->eval();
  std::vector<crsm::model::LatentDynamics> dynamics;
  for (const auto arch : kArchs) {
    crsm::model::DynamicsConfig dc;
    dc.arch = arch;
    dc.num_layers = cfg.model.num_layers;
    dc.d_model = cfg.model.d_model;
    dynamics.emplace_back(dc);
    dynamics.back()->eval();
  }
  torch::NoGradGuard no_grad;
  std::printf("\n%s: %lld layers x %lld wide, float32; parameters: backbone %.1fM", path.c_str(),
              static_cast<long long>(cfg.model.num_layers),
              static_cast<long long>(cfg.model.d_model), million_parameters(*backbone));
  for (size_t i = 0; i < dynamics.size(); ++i)
    std::printf(", %s %.2fM", to_string(kArchs[i]).c_str(), million_parameters(*dynamics[i]));
  std::printf("\n");
  // Another process on the cores shows up here long before it is obvious in the figures.
  double load[1] = {0};
  getloadavg(load, 1);
  std::printf("load average %.2f (above %d, the figures are not worth quoting)\n", load[0],
              thread_counts.back());
  std::printf("%7s %5s %12s", "threads", "batch", "backbone ms");
  for (const auto arch : kArchs)
    std::printf(" %12s %7s", (to_string(arch) + " ms").c_str(), "ratio");
  std::printf("\n");
  for (const int threads : thread_counts) {
    at::set_num_threads(threads);
    for (const int64_t batch : {1, 16}) {
      const auto prompt = torch::randint(0, cfg.model.vocab_size, {batch, 16}, torch::kLong);
      crsm::model::ModelState after_prompt;
      backbone->prefill(prompt, after_prompt);
      const auto token = torch::randint(0, cfg.model.vocab_size, {batch}, torch::kLong);
      // Every timed step starts from the same snapshot: a step at exactly position 16.
      const double backbone_s = seconds_per_call([&] {
        crsm::model::ModelState s = after_prompt;
        backbone->step(token, s);
      });
      std::printf("%7d %5lld %12.3f", threads, static_cast<long long>(batch), backbone_s * 1e3);
      for (auto& dyn : dynamics) {
        // A planner transition looks the action's embedding up and steps the latents.
        const double dynamics_s =
            seconds_per_call([&] { dyn->step(after_prompt.latents, backbone->embed(token)); });
        std::printf(" %12.3f %7.3f", dynamics_s * 1e3, dynamics_s / backbone_s);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::prepare_blas_environment(argv);
  std::string config_dir = "configs";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--configs") && i + 1 < argc) {
      config_dir = argv[++i];
    } else {
      std::cerr << "usage: crsm_bench_dynamics [--configs DIR]\n"
                << "unknown argument: " << argv[i] << "\n";
      return 2;
    }
  }
  const int default_threads = crsm::dist::configure_threads(0, 1);
  std::vector<int> thread_counts = {1};
  if (default_threads > 1) thread_counts.push_back(default_threads);
  std::printf("crsm_bench_dynamics: one step at position 16, median of 5 rounds after a "
              "warm-up;\nratio = dynamics step / backbone step (target <= 0.1 for shared)\n");
  try {
    bench_config(config_dir + "/small.json", thread_counts);
    bench_config(config_dir + "/large.json", thread_counts);
  } catch (const std::exception& e) {
    std::cerr << "crsm_bench_dynamics: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
