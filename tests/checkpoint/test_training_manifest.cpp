// A training checkpoint's manifest reads back as it was written: one format, two
// directions.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "checkpoint/store.h"
#include "checkpoint/training_checkpoint.h"
#include "data/temp_dir.h"

namespace crsm::checkpoint {
namespace {

namespace fs = std::filesystem;

TrainManifest written_and_read(const TrainManifest& m) {
  data::TempDir dir(fs::temp_directory_path().string(), "crsm-manifest");
  std::ofstream(fs::path(dir.path()) / kManifestFile) << train_manifest_json(m).dump(2);
  return read_train_manifest(dir.path());
}

TEST(TrainManifest, EveryFieldReadsBackAsWritten) {
  TrainManifest m;
  m.world_size = 3;
  m.zero_stage = 3;
  m.state.step = 41;
  m.state.sampler = {2, 17};
  m.state.stage = Stage::kFinetune;
  m.state.window = {5, {1.25, 0.5}, 2.5};
  m.config = {{"d_model", 64}};
  m.optimizer_shards = {{"rank00000.safetensors", {{"a.weight", 0, 10}}}, {"rank00001.safetensors", {}},
                        {"rank00002.safetensors", {{"a.weight", 10, 6}, {"b", 0, 4}}}};
  m.parameter_shards = m.optimizer_shards;
  m.parameter_shards["rank00000.safetensors"].push_back({"frozen", 0, 8});
  const TrainManifest r = written_and_read(m);
  EXPECT_EQ(r.world_size, 3);
  EXPECT_EQ(r.zero_stage, 3);
  EXPECT_EQ(r.state.step, 41);
  EXPECT_EQ(r.state.sampler.epoch, 2);
  EXPECT_EQ(r.state.sampler.batch, 17);
  EXPECT_EQ(r.state.stage, Stage::kFinetune);
  EXPECT_EQ(r.state.window.steps, 5);
  EXPECT_EQ(r.state.window.sums, (std::vector<double>{1.25, 0.5}));
  EXPECT_EQ(r.state.window.seconds, 2.5);
  EXPECT_EQ(r.config, m.config);
  const auto same = [](const auto& a, const auto& b) {
    if (a.size() != b.size()) return false;
    for (const auto& [file, pieces] : a) {
      const auto& other = b.at(file);
      if (pieces.size() != other.size()) return false;
      for (size_t i = 0; i < pieces.size(); ++i)
        if (pieces[i].param != other[i].param || pieces[i].offset != other[i].offset || pieces[i].length != other[i].length)
          return false;
    }
    return true;
  };
  EXPECT_TRUE(same(r.optimizer_shards, m.optimizer_shards));
  EXPECT_TRUE(same(r.parameter_shards, m.parameter_shards));
}

TEST(TrainManifest, ReplicatedParametersWriteNoParameterShards) {
  TrainManifest m;
  m.config = nlohmann::json::object();
  m.optimizer_shards = {{"rank00000.safetensors", {{"a", 0, 1}}}};
  EXPECT_FALSE(train_manifest_json(m).contains("parameter_shards"));
  EXPECT_TRUE(written_and_read(m).parameter_shards.empty());
}

}  // namespace
}  // namespace crsm::checkpoint
