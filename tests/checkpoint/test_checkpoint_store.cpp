#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../support/scratch_dir.h"
#include "checkpoint/store.h"

namespace {

namespace fs = std::filesystem;
using namespace crsm::checkpoint;

class DistCheckpointStore : public crsm::testing::ScratchDirTest {
 protected:

  std::string save(int64_t step, const std::string& payload, int keep_last = 0) {
    const auto tmp = begin_checkpoint(dir.string(), step);
    std::ofstream(fs::path(tmp) / "model.bin") << payload;
    return commit_checkpoint(dir.string(), tmp, {{"step", step}}, keep_last);
  }

};

TEST_F(DistCheckpointStore, CommitWritesManifestAndLatest) {
  const auto ckpt = save(7, "weights");
  EXPECT_EQ(fs::path(ckpt).filename(), "step_00000007");
  EXPECT_EQ(verify_checkpoint(ckpt), "");
  const auto manifest = read_manifest(ckpt);
  EXPECT_EQ(manifest["step"], 7);
  EXPECT_EQ(manifest["files"]["model.bin"]["bytes"], 7);
  std::ifstream latest(dir / "latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_00000007");
  EXPECT_FALSE(fs::exists(dir / "step_00000007.tmp"));
}

TEST_F(DistCheckpointStore, KeepLastPrunesOldest) {
  for (int step = 1; step <= 4; ++step) save(step, "w" + std::to_string(step), 2);
  EXPECT_FALSE(fs::exists(dir / "step_00000001"));
  EXPECT_FALSE(fs::exists(dir / "step_00000002"));
  EXPECT_TRUE(fs::exists(dir / "step_00000003"));
  EXPECT_TRUE(fs::exists(dir / "step_00000004"));
}

// Split verification (one share per rank on resume) must still hash every file, each
// exactly once, whatever the number of shares.
TEST_F(DistCheckpointStore, SplitVerificationHashesEachFileExactlyOnce) {
  const auto tmp = begin_checkpoint(dir.string(), 3);
  const std::vector<std::pair<std::string, size_t>> files = {
      {"model.bin", 3000}, {"rank00000.bin", 1000}, {"rank00001.bin", 1000}, {"rank00002.bin", 700}};
  for (const auto& [name, bytes] : files) std::ofstream(fs::path(tmp) / name) << std::string(bytes, 'w');
  const auto ckpt = commit_checkpoint(dir.string(), tmp, {{"step", 3}}, 0);
  for (int shares = 1; shares <= 5; ++shares) {
    for (const auto& [name, bytes] : files) {
      const fs::path path = fs::path(ckpt) / name;
      std::fstream(path, std::ios::in | std::ios::out | std::ios::binary).put('X');
      int reporting = 0;
      for (int share = 0; share < shares; ++share) {
        const std::string problem = verify_checkpoint(ckpt, share, shares);
        if (problem.empty()) continue;
        ++reporting;
        EXPECT_NE(problem.find(name), std::string::npos) << problem;
      }
      EXPECT_EQ(reporting, 1) << name << " with " << shares << " shares";
      std::fstream(path, std::ios::in | std::ios::out | std::ios::binary).put('w');
    }
    for (int share = 0; share < shares; ++share) EXPECT_EQ(verify_checkpoint(ckpt, share, shares), "");
  }
  // A size mismatch is cheap to see, so every share reports it.
  fs::resize_file(fs::path(ckpt) / "rank00002.bin", 699);
  for (int share = 0; share < 3; ++share)
    EXPECT_NE(verify_checkpoint(ckpt, share, 3).find("truncated"), std::string::npos);
}

// A run resumed from an older checkpoint is a new branch: what it saves must survive
// pruning, and `auto` must follow it rather than the abandoned, higher-numbered one.
TEST_F(DistCheckpointStore, ResumedBranchSurvivesPruningAndAutoFollowsLatest) {
  save(10, "ten");
  save(20, "twenty (abandoned branch)");
  const auto branch = save(15, "fifteen", /*keep_last=*/1);
  EXPECT_TRUE(fs::exists(branch));
  const auto chosen = resolve_resume("auto", dir.string(), nullptr);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(fs::path(*chosen).filename(), "step_00000015");
}

TEST_F(DistCheckpointStore, ShardFilesNamedByTheManifestMustBeInIt) {
  const auto tmp = begin_checkpoint(dir.string(), 3);
  std::ofstream(fs::path(tmp) / "rank00000.safetensors") << "rank zero";
  const auto ckpt = commit_checkpoint(
      dir.string(), tmp,
      {{"step", 3},
       {"optimizer_shards", {{"rank00000.safetensors", nlohmann::json::array()},
                             {"rank00001.safetensors", nlohmann::json::array()}}}},
      0);
  EXPECT_NE(verify_checkpoint(ckpt).find("rank00001.safetensors is named in optimizer_shards"),
            std::string::npos)
      << verify_checkpoint(ckpt);
}

TEST_F(DistCheckpointStore, DamageIsDetectedAndAutoFallsBack) {
  save(1, "first good");
  const auto newest = save(2, "second good");
  {
    std::fstream f(fs::path(newest) / "model.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.put('X');  // same size, different bytes
  }
  EXPECT_NE(verify_checkpoint(newest).find("SHA-256"), std::string::npos);
  std::vector<std::string> skipped;
  const auto chosen = resolve_resume("auto", dir.string(), &skipped);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(fs::path(*chosen).filename(), "step_00000001");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("step_00000002"), std::string::npos);
  try {
    resolve_resume(newest, dir.string(), nullptr);
    FAIL() << "an explicit damaged checkpoint must be refused";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
  }
}

TEST_F(DistCheckpointStore, TruncationAndMissingFilesAreDetected) {
  const auto ckpt = save(3, "0123456789");
  fs::resize_file(fs::path(ckpt) / "model.bin", 4);
  EXPECT_NE(verify_checkpoint(ckpt).find("truncated"), std::string::npos);
  fs::remove(fs::path(ckpt) / "model.bin");
  EXPECT_NE(verify_checkpoint(ckpt).find("missing"), std::string::npos);
  fs::remove(fs::path(ckpt) / "manifest.json");
  EXPECT_NE(verify_checkpoint(ckpt).find("manifest.json"), std::string::npos);
}

// Damage that makes reading throw (a malformed manifest entry, a directory where a
// file should be) is reported like any other, so `auto` passes over it and, on a
// resume, every rank still answers.
TEST_F(DistCheckpointStore, DamageThatThrowsIsReportedNotThrown) {
  save(1, "one");
  const auto entry_not_an_object = save(2, "two");
  auto manifest = read_manifest(entry_not_an_object);
  manifest["files"]["model.bin"] = 3;
  std::ofstream(fs::path(entry_not_an_object) / "manifest.json") << manifest.dump();
  std::string problem;
  EXPECT_NO_THROW(problem = verify_checkpoint(entry_not_an_object));
  EXPECT_NE(problem.find("manifest.json"), std::string::npos) << problem;

  const auto directory_for_a_file = save(3, "three");
  fs::remove(fs::path(directory_for_a_file) / "model.bin");
  fs::create_directory(fs::path(directory_for_a_file) / "model.bin");
  EXPECT_NO_THROW(problem = verify_checkpoint(directory_for_a_file));
  EXPECT_NE(problem.find("model.bin"), std::string::npos) << problem;

  std::vector<std::string> skipped;
  const auto chosen = resolve_resume("auto", dir.string(), &skipped);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(fs::path(*chosen).filename(), "step_00000001");
  EXPECT_EQ(skipped.size(), 2u);
}

TEST_F(DistCheckpointStore, UnfinishedSavesAreRemovedAndNothingElse) {
  const auto kept = save(2, "complete");
  fs::create_directories(dir / "step_00000003.tmp" / "partial");
  std::ofstream(dir / "step_00000004.tmp") << "a file, not a save";
  fs::create_directories(dir / "notes.tmp");
  EXPECT_EQ(remove_unfinished_saves(dir.string()), std::vector<std::string>{"step_00000003.tmp"});
  EXPECT_FALSE(fs::exists(dir / "step_00000003.tmp"));
  EXPECT_TRUE(fs::exists(dir / "step_00000004.tmp"));
  EXPECT_TRUE(fs::exists(dir / "notes.tmp"));
  EXPECT_EQ(verify_checkpoint(kept), "");
  EXPECT_TRUE(remove_unfinished_saves((dir / "absent").string()).empty());
}

TEST_F(DistCheckpointStore, AutoWithNothingSavedStartsFresh) {
  EXPECT_FALSE(resolve_resume("auto", dir.string(), nullptr));
  EXPECT_THROW(resolve_resume((dir / "nope").string(), dir.string(), nullptr), CheckpointError);
}

TEST_F(DistCheckpointStore, InterruptedResaveIsRecoveredByAuto) {
  const auto ckpt = save(5, "old but complete");
  // The state a crash between commit's two renames leaves behind.
  fs::rename(ckpt, ckpt + ".replaced");
  std::vector<std::string> notes;
  const auto chosen = resolve_resume("auto", dir.string(), &notes);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(fs::path(*chosen).filename(), "step_00000005");
  EXPECT_EQ(verify_checkpoint(*chosen), "");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("restored"), std::string::npos);
}

TEST_F(DistCheckpointStore, SavingAStepAgainReplacesItWhole) {
  save(5, "old");
  const auto ckpt = save(5, "new contents");
  EXPECT_EQ(verify_checkpoint(ckpt), "");
  EXPECT_EQ(read_manifest(ckpt)["files"]["model.bin"]["bytes"], 12);
}

}  // namespace
