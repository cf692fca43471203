// Every command line the pipeline builds parses against the table of the command it runs,
// with the values the pipeline meant: a flag renamed in a command fails here.
#include <gtest/gtest.h>

#include "cli/pipeline_stages.h"

namespace crsm::cli {
namespace {

ParsedOptions pipeline(std::vector<std::string> extra = {}) {
  CommandLine line("pipeline", pipeline_options());
  line.set("config", "/c.json").set("output-dir", "/out").set("threads", 3).set("collective-timeout", 60);
  for (size_t i = 0; i + 1 < extra.size(); i += 2) line.set(extra[i], extra[i + 1]);
  return line.parse();
}

const PipelineInputs kInputs{"/c.json", "/out/data", "cpu", {"/tasks/a", "/tasks/b.jsonl"}};

TEST(PipelineStages, TrainingStagesCarryTheSharedFlags) {
  const auto o = pipeline({"backbone-steps", "7", "save-every", "5"});
  const auto b = backbone_line(o, kInputs, "/out/backbone").parse();
  EXPECT_EQ(b.text("config"), "/c.json");
  EXPECT_EQ(b.text("data"), "/out/data");
  EXPECT_EQ(b.text("checkpoint-dir"), "/out/backbone");
  EXPECT_EQ(b.integer("max-steps"), 7);
  EXPECT_EQ(b.integer("save-every"), 5);
  EXPECT_EQ(b.integer("threads"), 3);
  EXPECT_EQ(b.integer("collective-timeout"), 60);
  EXPECT_TRUE(b.is_set("no-value-loss"));
  EXPECT_EQ(b.text("resume"), "auto");
  const auto f = finetune_line(o, kInputs, "/out/finetune", "/out/backbone").parse();
  EXPECT_FALSE(f.is_set("no-value-loss"));
  EXPECT_FALSE(f.has("max-steps"));  // --finetune-steps not given: the config's epochs
  EXPECT_EQ(f.text("resume"), "/out/backbone");
}

TEST(PipelineStages, SettingsOfConfigKeysReachTheTrainingAndDistillStages) {
  CommandLine line("pipeline", pipeline_options());
  line.set("config", "/c.json").set("output-dir", "/out").set("set", std::vector<std::string>{"lr=0.01", "dynamics_lr=0.002"});
  const auto o = line.parse();
  const std::vector<std::string> settings = {"lr=0.01", "dynamics_lr=0.002"};
  EXPECT_EQ(backbone_line(o, kInputs, "/b").parse().texts("set"), settings);
  EXPECT_EQ(finetune_line(o, kInputs, "/f", "/b").parse().texts("set"), settings);
  EXPECT_EQ(distill_line(o, kInputs, "/f", "/d", 10).parse().texts("set"), settings);
}

TEST(PipelineStages, NoTensorBoardReachesTheStagesThatWriteMetrics) {
  CommandLine line("pipeline", pipeline_options());
  line.set("config", "/c.json").set("output-dir", "/out").set("no-tensorboard");
  const auto o = line.parse();
  EXPECT_TRUE(backbone_line(o, kInputs, "/b").parse().is_set("no-tensorboard"));
  EXPECT_TRUE(finetune_line(o, kInputs, "/f", "/b").parse().is_set("no-tensorboard"));
  EXPECT_TRUE(distill_line(o, kInputs, "/f", "/d", 10).parse().is_set("no-tensorboard"));
  EXPECT_FALSE(backbone_line(pipeline(), kInputs, "/b").parse().is_set("no-tensorboard"));
}

TEST(PipelineStages, DistillAssembleCheckAndEvalParse) {
  const auto o = pipeline({"dynamics-steps", "9", "check-samples", "11", "max-tasks", "4", "modes", "greedy,mcts"});
  const auto d = distill_line(o, kInputs, "/out/finetune", "/out/dynamics", 512).parse();
  EXPECT_EQ(d.text("model-path"), "/out/finetune");
  EXPECT_EQ(d.integer("num-samples"), 512);
  EXPECT_EQ(d.integer("max-steps"), 9);
  const auto a = assemble_line("/out/finetune", "/out/dynamics", "/out/model").parse();
  EXPECT_EQ(a.text("dynamics"), "/out/dynamics");
  const auto c = check_dynamics_line(o, kInputs, "/out/model").parse();
  EXPECT_EQ(c.integer("samples"), 11);
  const auto e = eval_line(o, kInputs, "/out/model", "/out/eval/eval.json").parse();
  EXPECT_EQ(e.texts("tasks"), kInputs.tasks);
  EXPECT_EQ(e.text("modes"), "greedy,mcts");
  EXPECT_EQ(e.integer("max-tasks"), 4);
  EXPECT_TRUE(e.is_set("force"));
  EXPECT_EQ(eval_line(o, kInputs, "/m", "/r").text().rfind("crsm_train eval --model /m --output /r --force", 0), 0u);
}

}  // namespace
}  // namespace crsm::cli
