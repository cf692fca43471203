// Stage 3: crsm_train assemble (one checkpoint with the backbone and its dynamics) and
// crsm_train check-dynamics (the seed's check_dynamics_quality, with R² and rollouts).
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include "cli/commands.h"
#include "cli/stages.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "data/prepared_corpus.h"
#include "data/temp_dir.h"
#include "checkpoint/store.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "checkpoint/assembled_checkpoint.h"
#include "checkpoint/run_dir.h"
#include "distill/dynamics_quality.h"
#include "checkpoint/training_checkpoint.h"
#include "train/training_data.h"

namespace crsm::cli {

const std::vector<Option>& assemble_options() {
  static const std::vector<Option> table = {
      Option("backbone", Constraint::path(), "backbone checkpoint, or a run directory (its newest complete checkpoint)").mandatory(),
      Option("dynamics", Constraint::path(), "dynamics.safetensors, or the distill --output-path directory holding it").mandatory(),
      Option("output", Constraint::path(), "directory for the assembled checkpoint (<output>/checkpoints/step_N)").mandatory(),
  };
  return table;
}

const std::vector<Option>& check_dynamics_options() {
  static const std::vector<Option> table = {
      Option("model", Constraint::path(), "assembled checkpoint, or its run directory").mandatory(),
      Option("data", Constraint::path(), "text file or prepared directory; its val split is the held-out text").mandatory(),
      Option("samples", Constraint::integer(1, 1 << 24), "held-out transitions to score (the seed's test_samples)").with_default("1000"),
      Option("seq-len", Constraint::integer(8, 1 << 20), "tokens of context per window (default: the backbone's seq_len)"),
      Option("seed", config_constraint("seed"), "seed of the windows' choice").with_default("1"),
      Option("json", Constraint::boolean(), "print the report as one JSON object"),
      Option("threads", Constraint::integer(0, 4096), "CPU threads (0: all cores)").with_default("0"),
  };
  return table;
}

namespace {

namespace fs = std::filesystem;

// A distillation's run directory stands for its dynamics file.
std::string dynamics_file(const std::string& spec) {
  return fs::is_directory(spec) ? checkpoint::RunDir(spec).dynamics() : spec;
}

// The backbone (and its run), and the distillation run the dynamics model comes from.
std::vector<Input> assemble_inputs(const std::string& backbone, const ParsedOptions& o) {
  std::vector<Input> inputs = checkpoint_inputs(backbone, o.text("backbone"));
  const fs::path dynamics = o.text("dynamics");
  std::error_code ec;
  if (fs::is_directory(dynamics, ec))
    inputs.push_back({Input::Kind::kRun, dynamics.string()});
  else if (fs::exists(checkpoint::RunDir(dynamics.parent_path().string()).dynamics_report(), ec))
    inputs.push_back({Input::Kind::kRun, dynamics.parent_path().string()});
  return inputs;
}

void print_report(const distill::QualityReport& r, const std::string& dir, const std::string& arch) {
  const auto& s = r.one_step;
  std::printf("check-dynamics: %s (%s dynamics) on %lld held-out transitions\n", dir.c_str(), arch.c_str(),
              static_cast<long long>(s.rows));
  std::printf("%-6s %12s %12s %8s %12s %12s\n", "layer", "mse", "mae", "R²", "R² zero Δ", "R² mean Δ");
  for (size_t l = 0; l < s.r2.size(); ++l)
    std::printf("%-6zu %12.6f %12.6f %8.4f %12.4f %12.4f\n", l, s.mse[l], s.mae[l], s.r2[l], s.r2_zero[l], s.r2_mean[l]);
  std::printf("Average MSE: %.6f (%s)\nAverage MAE: %.6f\nAverage R²: %.4f\nBeats both trivial predictors at every layer: %s\n",
              s.avg_mse, r.verdict.c_str(), s.avg_mae, s.avg_r2, s.beats_trivial() ? "yes" : "no");
  std::printf("%-10s %10s %14s %14s %10s\n", "rollout k", "starts", "mse", "mse (stay)", "R² (Δ)");
  for (const auto& k : r.rollouts)
    std::printf("%-10lld %10lld %14.6f %14.6f %10.4f\n", static_cast<long long>(k.k), static_cast<long long>(k.starts),
                k.mse, k.zero_mse, k.r2);
}

}  // namespace

std::string run_assemble(const ParsedOptions& o) {
  std::vector<std::string> skipped;
  const std::string backbone = checkpoint::resolve_checkpoint(o.text("backbone"), "--backbone", &skipped);
  for (const auto& note : skipped) std::fprintf(stderr, "assemble: %s\n", note.c_str());
  check_output_directory("--output", o.text("output"), assemble_inputs(backbone, o));
  const std::string dir = checkpoint::assemble_checkpoint(backbone, dynamics_file(o.text("dynamics")), o.text("output"), [] {
    dist::stop_if_preempted("assemble", "before the checkpoint was complete; nothing was written: rerun the command");
  });
  std::printf("assemble: wrote %s (backbone %s with dynamics %s)\n", dir.c_str(), backbone.c_str(),
              dynamics_file(o.text("dynamics")).c_str());
  return dir;
}

int assemble_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train assemble --backbone CKPT --dynamics FILE --output DIR",
                                    assemble_options());
  if (parsed) run_assemble(*parsed);
  return 0;
}

nlohmann::json run_check_dynamics(const ParsedOptions& o) {
  dist::stop_if_preempted("check-dynamics", "before scoring anything: rerun the command");
  std::vector<std::string> skipped;
  const std::string dir = checkpoint::resolve_checkpoint(o.text("model"), "--model", &skipped);
  for (const auto& note : skipped) std::fprintf(stderr, "check-dynamics: %s\n", note.c_str());
  const auto dynamics = checkpoint::load_checkpoint_dynamics(dir);
  if (!dynamics)
    throw UsageError("--model " + dir + " has no dynamics model: assemble one with crsm_train assemble --backbone " + dir +
                     " --dynamics DISTILL_DIR --output DIR");
  RunConfig config;
  auto backbone = checkpoint::load_checkpoint_model(dir, &config);
  // Held-out text is only read: a text file is prepared in a scratch directory.
  auto local = dist::make_local_communicator();
  data::TempDir scratch(fs::temp_directory_path().string(), "crsm-check-dynamics");
  const std::string data_dir = train::resolve_training_data(o.text("data"), scratch.path(), *local);
  auto corpus = data::PreparedCorpus::open(data_dir);
  data::check_vocab_matches(*corpus.tokenizer, config.model.vocab_size, "--data " + data_dir + " with " + dir);
  const int64_t seq_len = o.has("seq-len") ? o.integer("seq-len") : config.train.seq_len;
  std::vector<int64_t> ks;
  for (int64_t k : {1, 2, 4, 8})
    if (k <= seq_len) ks.push_back(k);
  const auto report = distill::check_dynamics_quality(backbone, *dynamics, corpus.val, o.integer("samples"), seq_len,
                                                    static_cast<uint64_t>(o.integer("seed")), ks, "--data " + data_dir);
  const std::string arch = model::to_string(dynamics->model->config().arch);
  auto j = report.to_json();
  j["model"] = dir;
  j["dynamics_arch"] = arch;
  if (o.is_set("json"))
    std::printf("%s\n", j.dump(2).c_str());
  else
    print_report(report, dir, arch);
  return j;
}

// One process: every CPU of the node unless --threads says otherwise.
int check_dynamics_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train check-dynamics --model DIR --data DATA [--samples N] [--json]",
                                    check_dynamics_options());
  if (!parsed) return 0;
  dist::configure_threads(static_cast<int>(parsed->integer("threads")), 1);
  run_check_dynamics(*parsed);
  return 0;
}

}  // namespace crsm::cli
