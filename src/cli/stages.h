#pragma once

// The commands the pipeline runs as its stages, each as its option table and the command
// itself on parsed options (cli/options.h's CommandLine builds them from that table),
// run in the caller's session and returning what it made. The crsm_train commands of
// the same names are these, after parsing argv and starting a session of their own.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "cli/session.h"
#include "config/run_config.h"
#include "distill/dynamics_training.h"
#include "train/training_loop.h"

namespace crsm::cli {

// train: `config` is the --config file's (or the defaults); the flags are applied to it.
const std::vector<Option>& train_options();
train::TrainResult run_train(const ParsedOptions& o, RunConfig config, Session& session);

// distill: the backbone --model-path names (its newest complete checkpoint, verified
// once, with the notes on damaged ones skipped) and its config, then the distillation.
// The dynamics model lands in --output-path (RunDir::dynamics()); the result's
// train.exit_status says whether it got there.
const std::vector<Option>& distill_options();
struct DistillBackbone {
  std::string checkpoint;
  RunConfig config;
  std::vector<std::string> skipped;
};
DistillBackbone distill_backbone(const ParsedOptions& o);
distill::DynamicsResult run_distill(const ParsedOptions& o, const DistillBackbone& backbone, Session& session);

// assemble (one process): the checkpoint written.
const std::vector<Option>& assemble_options();
std::string run_assemble(const ParsedOptions& o);

// check-dynamics (one process): the dynamics' scores, also printed.
const std::vector<Option>& check_dynamics_options();
nlohmann::json run_check_dynamics(const ParsedOptions& o);

// rollouts: the master file of the rollouts, written in --output-path.
const std::vector<Option>& rollouts_options();
std::string run_rollouts(const ParsedOptions& o, Session& session);

// eval: the report, on rank 0 (null elsewhere), written to --output.
const std::vector<Option>& eval_options();
nlohmann::json run_eval(const ParsedOptions& o, Session& session);

}  // namespace crsm::cli
