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

#include "bench_cli.h"
#include "bench_timing.h"
#include "config/run_config.h"
#include "dist/cpu_setup.h"
#include "model/backbone.h"
#include "model/latent_dynamics.h"

namespace {

using crsm::model::DynamicsArch;

using crsm::bench::format;
using crsm::bench::Report;
using crsm::bench::seconds_per_call;

double million_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n / 1e6;
}

const DynamicsArch kArchs[] = {DynamicsArch::kShared, DynamicsArch::kPerLayer, DynamicsArch::kMlp};

void bench_config(const Report& report, const std::string& path, const std::vector<int>& thread_counts) {
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
  std::string sizes = format("\n%s: %lld layers x %lld wide, float32; parameters: backbone %.1fM", path.c_str(),
                             static_cast<long long>(cfg.model.num_layers), static_cast<long long>(cfg.model.d_model),
                             million_parameters(*backbone));
  for (size_t i = 0; i < dynamics.size(); ++i)
    sizes += format(", %s %.2fM", to_string(kArchs[i]).c_str(), million_parameters(*dynamics[i]));
  report.line(sizes);
  // Another process on the cores shows up here long before it is obvious in the figures.
  double load[1] = {0};
  getloadavg(load, 1);
  report.line(format("load average %.2f (above %d, the figures are not worth quoting)", load[0], thread_counts.back()));
  std::string header = format("%-44s %12s", "", "backbone ms");
  for (const auto arch : kArchs) header += format(" %12s %7s", (to_string(arch) + " ms").c_str(), "ratio");
  report.line(header);
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
      nlohmann::json fields = {{"config", path}, {"threads", threads}, {"batch", batch}, {"backbone_ms", backbone_s * 1e3}};
      std::string text = format("%12.3f", backbone_s * 1e3);
      for (size_t i = 0; i < dynamics.size(); ++i) {
        // A planner transition looks the action's embedding up and steps the latents.
        const double dynamics_s =
            seconds_per_call([&] { dynamics[i]->step(after_prompt.latents, backbone->embed(token)); });
        const std::string arch = to_string(kArchs[i]);
        fields[arch + "_ms"] = dynamics_s * 1e3;
        fields[arch + "_ratio"] = dynamics_s / backbone_s;
        text += format(" %12.3f %7.3f", dynamics_s * 1e3, dynamics_s / backbone_s);
      }
      report.row(format("step, %d thread%s, batch %lld", threads, threads == 1 ? "" : "s", static_cast<long long>(batch)),
                 fields, text);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::prepare_blas_environment(argv);
  const auto o = crsm::bench::parse_command_line(
      argc, argv, "usage: crsm_bench_dynamics [--json] [--configs DIR]",
      {crsm::cli::Option("configs", crsm::Constraint::path(),
                         "directory holding small.json and large.json (default: the bundled configs)")});
  const Report report{o.is_set("json")};
  const std::string config_dir = o.has("configs") ? o.text("configs") : crsm::bench::bundled_config("");
  const int default_threads = crsm::dist::configure_threads(0, 1);
  std::vector<int> thread_counts = {1};
  if (default_threads > 1) thread_counts.push_back(default_threads);
  report.line("crsm_bench_dynamics: one step at position 16, median of 5 rounds after a warm-up;\nratio = dynamics "
              "step / backbone step (target <= 0.1 for shared)");
  try {
    bench_config(report, config_dir + "/small.json", thread_counts);
    bench_config(report, config_dir + "/large.json", thread_counts);
  } catch (const std::exception& e) {
    std::cerr << "crsm_bench_dynamics: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
