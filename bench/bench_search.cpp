// Search and deliberation (SPEC §9), one config, one run: simulations per second of a
// 50-simulation search from real generation states with dynamics against exact
// transitions, at leaf batch 1 and 16; then tokens per second of generate --deliberate
// (sync and async) against plain generate.
//
// usage: crsm_bench_search [--json] [--config FILE (default: the bundled configs/small.json)] [--threads N]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "bench_timing.h"
#include "config/run_config.h"
#include "dist/cpu_setup.h"
#include "model/backbone.h"
#include "model/generation.h"
#include "model/latent_dynamics.h"
#include "search/deliberation.h"
#include "search/latent_model.h"
#include "search/mcts.h"

namespace {

using namespace crsm;

struct Models {
  model::Backbone backbone{nullptr};
  model::LatentDynamics dynamics{nullptr};
  std::vector<model::ModelState> roots;  // states after prompts of several lengths
};

Models make_models(const RunConfig& cfg) {
  torch::manual_seed(0);
  Models m;
  m.backbone = model::Backbone(cfg.model);
  m.backbone->eval();
  model::DynamicsConfig dc;
  dc.num_layers = cfg.model.num_layers;
  dc.d_model = cfg.model.d_model;
  m.dynamics = model::LatentDynamics(dc);
  m.dynamics->eval();
  torch::NoGradGuard no_grad;
  // Trained weights are not needed for speed, but the zero-delta start would make every
  // child of a node the same state; random weights give a tree of distinct states.
  for (auto& p : m.dynamics->parameters()) p.normal_(0.0, 0.05);
  for (int64_t length : {8, 32, 64}) {
    model::ModelState s;
    m.backbone->prefill(torch::randint(cfg.model.vocab_size, {1, length}, torch::kLong), s);
    m.roots.push_back(s);
  }
  return m;
}

// Simulations per second over searches from each root in turn.
search::SearchStats bench_search(search::LatentModel& model, const Models& m, search::SearchOptions o) {
  size_t next = 0;
  search::SearchStats last;
  const double seconds = bench::seconds_per_call([&] {
    last = search::run_search(model, search::states_of(m.roots[next++ % m.roots.size()]), o).stats;
  });
  last.seconds = seconds;  // per search, the median round's
  return last;
}

void search_table(const bench::Report& report, const Models& m, const RunConfig& cfg) {
  search::DynamicsModel learned(m.backbone, m.dynamics);
  search::ExactModel exact(m.backbone);
  report.line(bench::format("\nsearch, %d simulations, top_k %lld, c_puct %.1f (Python prototype on this machine: about "
                            "2,800/s with dynamics, 250/s exact)",
                            50, (long long)cfg.search.top_k, cfg.search.c_puct));
  report.line(bench::format("%-44s %14s %12s %10s %10s", "", "simulations/s", "ms/search", "calls", "max depth"));
  for (auto* entry : {static_cast<search::LatentModel*>(&learned), static_cast<search::LatentModel*>(&exact)}) {
    for (int64_t batch : {1, 16}) {
      auto o = search::SearchOptions::from(cfg.search);
      o.n_simulations = 50;
      o.leaf_batch = batch;
      const auto s = bench_search(*entry, m, o);
      const std::string transition = entry == &learned ? "dynamics" : "exact";
      report.row("search, " + transition + ", leaf batch " + std::to_string(batch),
                 {{"transition", transition}, {"leaf_batch", batch}, {"simulations_per_s", s.simulations / s.seconds},
                  {"ms_per_search", 1e3 * s.seconds}, {"network_calls", s.network_calls}, {"max_depth", s.max_depth}},
                 bench::format("%14.0f %12.3f %10lld %10lld", s.simulations / s.seconds, 1e3 * s.seconds,
                               (long long)s.network_calls, (long long)s.max_depth));
    }
  }
}

void generation_table(const bench::Report& report, const Models& m, const RunConfig& cfg) {
  constexpr int64_t kTokens = 64;
  const std::vector<int64_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  model::SamplingOptions sampling{0.8, 0, 1.0};
  auto backbone = m.backbone;
  const double plain = bench::seconds_per_call([&] { model::generate(backbone, prompt, kTokens, sampling, 1); }, 2.0);
  report.line(bench::format("\ngeneration, %lld tokens after an 8-token prompt, %lld simulations per search",
                            (long long)kTokens, (long long)cfg.search.n_simulations));
  report.line(bench::format("%-44s %10s %10s %12s", "", "tokens/s", "vs plain", "planned"));
  report.row("plain generate", {{"tokens_per_s", kTokens / plain}, {"vs_plain", 1.0}},
             bench::format("%10.0f %10s %12s", kTokens / plain, "1.00", "-"));
  for (auto timing : {search::PlanTiming::kSync, search::PlanTiming::kAsync}) {
    for (bool use_dynamics : {true, false}) {
      search::DeliberationOptions o;
      o.timing = timing;
      o.search = search::SearchOptions::from(cfg.search);
      o.sampling = sampling;
      std::shared_ptr<search::LatentModel> planner;
      if (use_dynamics) planner = std::make_shared<search::DynamicsModel>(m.backbone, m.dynamics);
      else planner = std::make_shared<search::ExactModel>(m.backbone);
      search::Deliberator d(m.backbone, planner, o);
      const double t = bench::seconds_per_call([&] { d.generate(prompt, kTokens, 1); }, 2.0);
      const std::string name = std::string("deliberate ") + (timing == search::PlanTiming::kSync ? "sync" : "async") +
                               (use_dynamics ? ", dynamics" : ", exact");
      report.row(name,
                 {{"tokens_per_s", kTokens / t}, {"vs_plain", plain / t}, {"planned_tokens", d.stats().planned_tokens},
                  {"tokens", d.stats().tokens}},
                 bench::format("%10.0f %10.2f %8lld/%lld", kTokens / t, plain / t, (long long)d.stats().planned_tokens,
                               (long long)d.stats().tokens));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  dist::prepare_blas_environment(argv);  // as crsm_train does: OpenBLAS single-threaded
  const auto o = bench::parse_command_line(
      argc, argv, "usage: crsm_bench_search [--json] [--config FILE] [--threads N]",
      {cli::Option("config", Constraint::path(), "the model's config (default: the bundled configs/small.json)"),
       cli::Option("threads", Constraint::integer(0, 4096), "CPU threads (0: all cores)").with_default("0")});
  const bench::Report report{o.is_set("json")};
  const std::string path = o.has("config") ? o.text("config") : bench::bundled_config("small.json");
  dist::configure_threads(static_cast<int>(o.integer("threads")), 1);
  const auto cfg = load_run_config(path);
  double load[1] = {0};
  getloadavg(load, 1);
  report.line(bench::format("%s: %lld layers x %lld wide, vocab %lld; %d threads; load average %.2f", path.c_str(),
                            (long long)cfg.model.num_layers, (long long)cfg.model.d_model,
                            (long long)cfg.model.vocab_size, at::get_num_threads(), load[0]));
  torch::NoGradGuard no_grad;
  const auto m = make_models(cfg);
  search_table(report, m, cfg);
  generation_table(report, m, cfg);
  return 0;
}
