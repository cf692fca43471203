#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "model/backbone.h"
#include "model/tensor_file.h"
#include "../support/file_size_limit.h"
#include "../support/scratch_dir.h"
#include "test_helpers.h"

namespace {

namespace fs = std::filesystem;
using crsm::model::Backbone;
using crsm::model::load_module_tensors;
using crsm::model::load_tensor_file;
using crsm::model::module_tensors;
using crsm::model::NamedTensors;
using crsm::model::save_tensor_file;
using crsm::model::TensorFileError;
using crsm::testing::tiny_model_config;

class TensorFileTest : public crsm::testing::ScratchDirTest {
 protected:

  // Runs `fn`, expects one of our errors (TensorFileError, or FileError for a failed
  // write), and returns its message.
  template <typename Fn>
  std::string error_of(Fn fn) {
    try {
      fn();
    } catch (const crsm::Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected crsm::Error";
    return "";
  }

};

TEST_F(TensorFileTest, ModelRoundTripIsBitExact) {
  torch::manual_seed(1);
  Backbone a(tiny_model_config());
  const auto path = (dir / "model.safetensors").string();
  save_tensor_file(path, module_tensors(*a), {{"format", "crsm"}});

  torch::manual_seed(2);
  Backbone b(tiny_model_config());
  std::map<std::string, std::string> meta;
  load_module_tensors(*b, load_tensor_file(path, &meta), path);
  EXPECT_EQ(meta.at("format"), "crsm");
  const auto ta = module_tensors(*a), tb = module_tensors(*b);
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_EQ(ta[i].first, tb[i].first);
    EXPECT_TRUE(torch::equal(ta[i].second, tb[i].second)) << ta[i].first;
  }
}

TEST_F(TensorFileTest, KeepsEveryDtypeAndShape) {
  const NamedTensors tensors = {
      {"f64", torch::randn({2, 3}, torch::kDouble)},
      {"bf16", torch::randn({4}).to(torch::kBFloat16)},
      {"i64", torch::arange(5, torch::kLong)},
      {"u8", torch::randint(0, 255, {3, 1, 2}, torch::kByte)},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 4})},
  };
  const auto path = (dir / "t.safetensors").string();
  save_tensor_file(path, tensors);
  const auto back = load_tensor_file(path);
  ASSERT_EQ(back.size(), tensors.size());
  for (size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].first, tensors[i].first);
    EXPECT_EQ(back[i].second.scalar_type(), tensors[i].second.scalar_type());
    EXPECT_TRUE(torch::equal(back[i].second, tensors[i].second)) << back[i].first;
  }
}

TEST_F(TensorFileTest, MissingExtraAndMisshapedTensorsAreNamed) {
  Backbone model(tiny_model_config());
  const auto before = module_tensors(*model);

  NamedTensors missing = before;
  missing.erase(missing.begin() + 3);
  EXPECT_NE(error_of([&] { load_module_tensors(*model, missing, "ckpt"); })
                .find("missing tensor " + before[3].first),
            std::string::npos);

  NamedTensors extra = before;
  extra.emplace_back("layers.9.mixer.D", torch::ones({4}));
  EXPECT_NE(error_of([&] { load_module_tensors(*model, extra, "ckpt"); })
                .find("unexpected tensor layers.9.mixer.D"),
            std::string::npos);

  NamedTensors misshaped = before;
  misshaped[0].second = torch::zeros({7, 7});
  const auto msg = error_of([&] { load_module_tensors(*model, misshaped, "ckpt"); });
  EXPECT_NE(msg.find(before[0].first + " has shape [7, 7]"), std::string::npos) << msg;

  // A refused load leaves the model untouched.
  const auto after = module_tensors(*model);
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(torch::equal(before[i].second, after[i].second));
}

TEST_F(TensorFileTest, TruncatedFileIsDetected) {
  const auto path = (dir / "t.safetensors").string();
  save_tensor_file(path, {{"w", torch::randn({64, 64})}});
  fs::resize_file(path, fs::file_size(path) - 100);
  const auto msg = error_of([&] { load_tensor_file(path); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;

  fs::resize_file(path, 5);
  EXPECT_NE(error_of([&] { load_tensor_file(path); }).find("truncated"), std::string::npos);
}

TEST_F(TensorFileTest, FailedSaveLeavesTheOldFileIntact) {
  const auto path = (dir / "t.safetensors").string();
  save_tensor_file(path, {{"w", torch::ones({3})}});
  EXPECT_THROW(save_tensor_file(path, {{"a", torch::ones({1})}, {"a", torch::zeros({1})}}),
               TensorFileError);
  const auto back = load_tensor_file(path);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(torch::equal(back[0].second, torch::ones({3})));
  EXPECT_EQ(crsm::testing::names_in(dir), std::set<std::string>{"t.safetensors"});
}

TEST_F(TensorFileTest, SaveThatFailsHalfWayLeavesTheOldFileIntact) {
  const auto path = (dir / "t.safetensors").string();
  save_tensor_file(path, {{"w", torch::ones({3})}});
  {
    crsm::testing::FileSizeLimit limit(4096);
    EXPECT_NE(error_of([&] { save_tensor_file(path, {{"big", torch::ones({100000})}}); }).find(path),
              std::string::npos);
  }
  const auto back = load_tensor_file(path);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(torch::equal(back[0].second, torch::ones({3})));
  EXPECT_EQ(crsm::testing::names_in(dir), std::set<std::string>{"t.safetensors"});
}

TEST_F(TensorFileTest, MissingFileIsNamed) {
  const auto path = (dir / "nope.safetensors").string();
  EXPECT_NE(error_of([&] { load_tensor_file(path); }).find(path), std::string::npos);
}

}  // namespace
