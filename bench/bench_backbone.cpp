// Backbone benchmarks (issue 2): training throughput, fused vs reference scan, and the
// cost of a recurrent step early and late in a sequence. Prints a table; with --json,
// one JSON object per measurement.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "bench_cli.h"
#include "bench_timing.h"
#include "config/run_config.h"
#include "dist/cpu_setup.h"
#include "model/backbone.h"
#include "model/selective_scan.h"

namespace {


using crsm::bench::Report;
using crsm::bench::seconds_per_call;

void bench_training(Report& report, const std::string& config_path) {
  const auto cfg = crsm::load_run_config(config_path);
  torch::manual_seed(0);
  crsm::model::Backbone model(cfg.model);
  model->train();
  const int64_t B = cfg.train.batch_size, T = cfg.train.seq_len;
  const auto tokens = torch::randint(0, cfg.model.vocab_size, {B, T + 1}, torch::kLong);
  const auto inputs = tokens.narrow(1, 0, T), targets = tokens.narrow(1, 1, T);
  const double s = seconds_per_call([&] {
    model->zero_grad();
    const auto logits = model->forward(inputs).logits;
    torch::nn::functional::cross_entropy(logits.reshape({-1, cfg.model.vocab_size}),
                                         targets.reshape(-1))
        .backward();
  }, 3.0);
  const double tps = B * T / s;
  char text[128];
  std::snprintf(text, sizeof text, "%10.0f tokens/s  (batch %lld x %lld, %.1f ms/step)", tps,
                static_cast<long long>(B), static_cast<long long>(T), s * 1e3);
  report.row("train fwd+bwd " + config_path,
             {{"config", config_path}, {"tokens_per_s", tps}, {"batch", B}, {"seq_len", T},
              {"ms_per_step", s * 1e3}},
             text);
}

// The model's scan (the fused CPU kernel, or the CUDA kernel on a GPU) against the
// reference at B x T x D channels x N states, on `device`.
void bench_scan(Report& report, const torch::Device& device, int64_t B, int64_t T, int64_t D, int64_t N) {
  torch::manual_seed(0);
  std::vector<torch::Tensor> in = {
      torch::randn({B, T, D}),      torch::softplus(torch::randn({B, T, D})) * 0.1,
      -torch::exp(torch::randn({D, N}) * 0.5), torch::randn({B, T, N}),
      torch::randn({B, T, N}),      torch::randn({D}),
      torch::randn({B, T, D})};
  for (auto& t : in) t = t.to(device).requires_grad_(true);
  // A GPU runs asynchronously: a timed call ends when the device has finished it.
  const auto finish = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  using ScanFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const at::Tensor&, at::Tensor*);
  auto forward = [&](ScanFn fn) {
    return seconds_per_call([&] {
      torch::NoGradGuard no_grad;
      fn(in[0], in[1], in[2], in[3], in[4], in[5], in[6], nullptr);
      finish();
    });
  };
  auto forward_backward = [&](ScanFn fn) {
    return seconds_per_call([&] {
      for (auto& t : in) t.mutable_grad() = torch::Tensor();
      fn(in[0], in[1], in[2], in[3], in[4], in[5], in[6], nullptr).sum().backward();
      finish();
    });
  };
  const double fused_f = forward(&crsm::model::selective_scan);
  const double ref_f = forward(&crsm::model::selective_scan_reference);
  const double fused_fb = forward_backward(&crsm::model::selective_scan);
  const double ref_fb = forward_backward(&crsm::model::selective_scan_reference);
  auto emit = [&](const std::string& pass, double fused, double ref) {
    char text[160];
    std::snprintf(text, sizeof text, "fused %8.2f ms  reference %8.2f ms  speed-up %5.1fx",
                  fused * 1e3, ref * 1e3, ref / fused);
    char shape[96];
    std::snprintf(shape, sizeof shape, " %s B%lld T%lld D%lld N%lld", device.str().c_str(), static_cast<long long>(B),
                  static_cast<long long>(T), static_cast<long long>(D), static_cast<long long>(N));
    report.row("scan " + pass + shape,
               {{"pass", pass}, {"device", device.str()}, {"fused_ms", fused * 1e3}, {"reference_ms", ref * 1e3},
                {"speedup", ref / fused}},
               text);
  };
  emit("forward", fused_f, ref_f);
  emit("forward+backward", fused_fb, ref_fb);
}

void bench_recurrent(Report& report, const std::string& config_path) {
  const auto cfg = crsm::load_run_config(config_path);
  torch::manual_seed(0);
  crsm::model::Backbone model(cfg.model);
  model->eval();
  torch::NoGradGuard no_grad;
  double per_position[2];
  const int64_t positions[2] = {16, 1024};
  for (int i = 0; i < 2; ++i) {
    const auto prompt = torch::randint(0, cfg.model.vocab_size, {1, positions[i]}, torch::kLong);
    crsm::model::ModelState at_position;
    model->prefill(prompt, at_position);
    const auto token = torch::randint(0, cfg.model.vocab_size, {1}, torch::kLong);
    // Every timed step starts from the same snapshot, so it is a step at exactly this position.
    per_position[i] = seconds_per_call([&] {
      crsm::model::ModelState s = at_position;
      model->step(token, s);
    });
    char text[128];
    std::snprintf(text, sizeof text, "%10.0f tokens/s  (%.3f ms/step)", 1.0 / per_position[i],
                  per_position[i] * 1e3);
    report.row("recurrent step at position " + std::to_string(positions[i]),
               {{"config", config_path}, {"position", positions[i]},
                {"tokens_per_s", 1.0 / per_position[i]}},
               text);
  }
  char text[64];
  std::snprintf(text, sizeof text, "%.3f (1.0 = O(1) per token)", per_position[1] / per_position[0]);
  report.row("recurrent step time ratio 1024/16", {{"ratio", per_position[1] / per_position[0]}},
             text);
}

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::prepare_blas_environment(argv);
  const auto o = crsm::bench::parse_command_line(
      argc, argv, "usage: crsm_bench [--json] [--threads N] [--configs DIR] [--cuda-scan]",
      {crsm::cli::Option("threads", crsm::Constraint::integer(0, 4096), "CPU threads (0: all cores)").with_default("0"),
       crsm::cli::Option("configs", crsm::Constraint::path(), "directory holding tiny.json and small.json (default: the bundled configs)"),
       crsm::cli::Option("cuda-scan", crsm::Constraint::boolean(), "also time the CUDA scan (needs a GPU)")});
  Report report{o.is_set("json")};
  const std::string config_dir = o.has("configs") ? o.text("configs") : crsm::bench::bundled_config("");
  const bool cuda_scan = o.is_set("cuda-scan");
  crsm::dist::configure_threads(static_cast<int>(o.integer("threads")), 1);
  try {
    if (cuda_scan && !torch::cuda::is_available()) throw std::runtime_error("--cuda-scan: no GPU is available");
    if (!report.json)
      std::printf("crsm_bench: %d threads, LibTorch %s, OPENBLAS_CORETYPE=%s\n",
                  at::get_num_threads(), TORCH_VERSION,
                  std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(auto)");
    bench_training(report, config_dir + "/tiny.json");
    bench_training(report, config_dir + "/small.json");
    bench_scan(report, torch::kCPU, 8, 256, 512, 16);
    // On a GPU: the CUDA kernel at the large config's d_inner / 2 (issue 13's shape).
    if (cuda_scan) bench_scan(report, torch::Device(torch::kCUDA, 0), 8, 512, 1536, 16);
    bench_recurrent(report, config_dir + "/small.json");
  } catch (const std::exception& e) {
    std::cerr << "crsm_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
