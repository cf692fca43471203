#pragma once

// Every path of a run directory, named once. A run is what `train` and `distill` write
// (and `assemble`, and each stage of the pipeline):
//   checkpoints/          step_N/ and `latest` (checkpoint/store.h)
//   metrics.jsonl         one JSON object per logging window and validation
//   tensorboard/          the same records as TensorBoard event files, by default
//                         (metrics/tensorboard_writer.h)
//   config.json           the run's config
//   run_info.jsonl        one line per start: command line, every option, versions, hosts
//   traces/rankNNNNN.json each rank's Chrome trace of --profile-steps (train/step_trace.h)
//   data/                 a text --data, prepared for the run
//   transitions/          distill's collection (train.h5, train/rankNNNNN.h5, val...)
//   dynamics.safetensors  distill's dynamics model (checkpoint/dynamics_file.h)
//   dynamics.json         its report
//   eval.json             eval's report, by default
//   pipeline.json         a pipeline's record of what it was asked and what it did
// No other file spells these names.

#include <optional>
#include <string>
#include <vector>

#include "metrics/metrics_log.h"

namespace crsm::checkpoint {

// The dynamics model's file (checkpoint/dynamics_file.h), in a distillation's run
// directory and in an assembled checkpoint alike.
inline constexpr const char* kDynamicsFileName = "dynamics.safetensors";

class RunDir {
 public:
  explicit RunDir(std::string path) : path_(std::move(path)) {}
  // The run a checkpoint directory lies in (RUN/checkpoints/step_N), if it lies in one.
  static std::optional<RunDir> of_checkpoint(const std::string& checkpoint);

  const std::string& path() const { return path_; }
  std::string checkpoints() const { return child(kCheckpoints); }
  std::string metrics() const { return child(metrics::kMetricsFile); }
  std::string tensorboard() const { return child(kTensorBoard); }
  std::string config() const { return child(kConfig); }
  std::string run_info() const { return child(kRunInfo); }
  std::string trace(int rank) const;
  std::string data() const { return child(kData); }
  std::string transitions() const { return child(kTransitions); }
  std::string dynamics() const { return child(kDynamicsFileName); }
  std::string dynamics_report() const { return child(kDynamicsReport); }
  std::string eval_report() const { return child(kEvalReport); }
  std::string pipeline_record() const { return child(kPipelineRecord); }

  // Whether checkpoints/ holds a checkpoint under its final name (complete or not).
  bool holds_checkpoints() const;
  // The names of the files a run keeps directly in its directory: no command's output
  // may take one of their places.
  static const std::vector<std::string>& own_files();

 private:
  static constexpr const char* kCheckpoints = "checkpoints";
  static constexpr const char* kTensorBoard = "tensorboard";
  static constexpr const char* kConfig = "config.json";
  static constexpr const char* kRunInfo = "run_info.jsonl";
  static constexpr const char* kTraces = "traces";
  static constexpr const char* kData = "data";
  static constexpr const char* kTransitions = "transitions";
  static constexpr const char* kDynamicsReport = "dynamics.json";
  static constexpr const char* kEvalReport = "eval.json";
  static constexpr const char* kPipelineRecord = "pipeline.json";

  std::string child(const char* name) const;
  std::string path_;
};

}  // namespace crsm::checkpoint
