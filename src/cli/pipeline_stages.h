#pragma once

// The pipeline's stages as command lines (cli/options.h's CommandLine): each built from
// the pipeline's own options against the option table of the command it runs, so a flag
// renamed in a command fails tests/cli's unit test of these lines, not a pipeline run.

#include <string>
#include <vector>

#include "cli/options.h"

namespace crsm::cli {

const std::vector<Option>& pipeline_options();

// What the pipeline resolved before its first stage.
struct PipelineInputs {
  std::string config_file;         // absolute
  std::string prepared;            // the corpus, prepared into DIR/data
  std::string device;              // the config's
  std::vector<std::string> tasks;  // the evaluation's task sources
  std::string rollout_tasks;       // stage 4's, with value_target outcome ("" otherwise)
};

// `o`: the pipeline's options. Paths are the stages' directories and inputs.
CommandLine backbone_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& run);
CommandLine finetune_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& run,
                          const std::string& resume);
// Stage 4 with value_target outcome: the fine-tuned model's rollouts on the rollout
// tasks, then the value heads trained on them.
CommandLine rollouts_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& model,
                          const std::string& out);
CommandLine outcome_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& run,
                         const std::string& rollouts, const std::string& resume);
CommandLine distill_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& model,
                         const std::string& out, int64_t samples);
CommandLine assemble_line(const std::string& model, const std::string& dynamics, const std::string& out);
CommandLine check_dynamics_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& model);
CommandLine eval_line(const ParsedOptions& o, const PipelineInputs& in, const std::string& planner,
                      const std::string& report);

}  // namespace crsm::cli
