// The one rule for where a command may write (cli/outputs.h), each clause on its own:
// nothing inside a checkpoint or collection it reads, no output directory in or as a run
// it reads, an output file in a run only beside the run's own files, and an output that
// is what its flag says.
#include <gtest/gtest.h>

#include <fstream>

#include "../support/scratch_dir.h"
#include "base/error.h"
#include "cli/outputs.h"

namespace {

namespace fs = std::filesystem;
using crsm::cli::check_output_directory;
using crsm::cli::check_output_file;
using crsm::cli::checkpoint_inputs;
using crsm::cli::Input;

class Outputs : public crsm::testing::ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    fs::create_directories(dir / "run" / "checkpoints" / "step_00000002");
    std::ofstream(dir / "run" / "metrics.jsonl") << "{}\n";
    std::ofstream(dir / "file.txt") << "x";
    fs::create_directories(dir / "transitions");
    checkpoint = (dir / "run" / "checkpoints" / "step_00000002").string();
  }
  std::string p(const std::string& relative) const { return (dir / relative).string(); }
  std::string checkpoint;
};

// The message a check refuses with, or "".
template <typename Fn>
std::string refusal(Fn fn) {
  try {
    fn();
  } catch (const crsm::UsageError& e) {
    return e.what();
  }
  return "";
}

TEST_F(Outputs, ACheckpointStandsForItselfAndItsRun) {
  const auto inputs = checkpoint_inputs(checkpoint);
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0].kind, Input::Kind::kCheckpoint);
  EXPECT_EQ(inputs[1].kind, Input::Kind::kRun);
  EXPECT_EQ(inputs[1].path, p("run"));
  // Named by the run directory, the run is read too; a checkpoint outside a run is alone.
  EXPECT_EQ(checkpoint_inputs(checkpoint, p("run")).size(), 3u);
  EXPECT_EQ(checkpoint_inputs(p("elsewhere/step_00000001")).size(), 1u);
}

TEST_F(Outputs, AnOutputDirectoryNeverGoesInsideWhatIsRead) {
  const auto inputs = checkpoint_inputs(checkpoint);
  const auto dir_refusal = [&](const std::string& out, const std::vector<Input>& in) {
    return refusal([&] { check_output_directory("--output-path", out, in); });
  };
  EXPECT_NE(dir_refusal(checkpoint + "/x", inputs).find("inside the checkpoint " + checkpoint), std::string::npos);
  EXPECT_NE(dir_refusal(p("run/checkpoints"), inputs).find("inside the run directory " + p("run")), std::string::npos);
  EXPECT_NE(dir_refusal(p("run/dyn"), inputs).find("--output-path " + p("run/dyn") + ": inside the run directory"),
            std::string::npos);
  EXPECT_NE(dir_refusal(p("run"), inputs).find("inside the run directory"), std::string::npos);
  EXPECT_NE(dir_refusal(p("run/../run/x"), inputs).find("inside the run directory"), std::string::npos);
  EXPECT_NE(dir_refusal(p("transitions/x"), {{Input::Kind::kCollection, p("transitions")}})
                .find("inside the transition collection"),
            std::string::npos);
  EXPECT_EQ(dir_refusal(p("dyn"), inputs), "");
  EXPECT_EQ(dir_refusal(p("runs2"), inputs), "");  // a sibling whose name starts alike
  EXPECT_EQ(dir_refusal(dir.string(), inputs), "");  // above the run: nothing of it is replaced
  EXPECT_NE(dir_refusal(p("file.txt"), {}).find("--output-path " + p("file.txt") + ": is a file (expected a directory)"),
            std::string::npos);
  EXPECT_NE(dir_refusal(p("file.txt/sub"), {}).find(p("file.txt") + " is a file, not a directory"), std::string::npos);
}

TEST_F(Outputs, AnOutputFileMayOnlyStandBesideARunsOwnFiles) {
  const auto inputs = checkpoint_inputs(checkpoint, p("run"));
  const auto file_refusal = [&](const std::string& out, bool force) {
    return refusal([&] { check_output_file("--output", out, force, inputs); });
  };
  EXPECT_EQ(file_refusal(p("run/eval.json"), false), "");  // a report beside the run
  EXPECT_EQ(file_refusal(p("elsewhere/model.safetensors"), false), "");
  EXPECT_NE(file_refusal(checkpoint + "/eval.json", true).find("inside the checkpoint"), std::string::npos);
  EXPECT_NE(file_refusal(p("run/checkpoints/loss.svg"), true).find("in place of the run's own files"), std::string::npos);
  EXPECT_NE(file_refusal(p("run/metrics.jsonl"), true).find("in place of the run's own files"), std::string::npos);
  EXPECT_NE(file_refusal(p("run/config.json"), true).find("in place of the run's own files"), std::string::npos);
  EXPECT_NE(file_refusal(p("run/checkpoints"), true).find("is a directory"), std::string::npos);
  EXPECT_NE(file_refusal(p("file.txt"), false).find("already exists; pass --force"), std::string::npos);
  EXPECT_EQ(file_refusal(p("file.txt"), true), "");
  EXPECT_NE(file_refusal(p("transitions"), true).find("is a directory"), std::string::npos);
  EXPECT_NE(file_refusal(p("file.txt/out.svg"), true).find("is a file, not a directory"), std::string::npos);
}

}  // namespace
