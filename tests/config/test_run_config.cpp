#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "config/run_config.h"

namespace {

using crsm::ConfigError;
using crsm::parse_run_config;
using nlohmann::json;

std::string error_of(const json& j) {
  try {
    parse_run_config(j, "test.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ConfigError for " << j.dump();
  return "";
}

TEST(RunConfig, BundledConfigsLoad) {
  for (const char* name : {"tiny", "small", "medium", "large"}) {
    const auto c = crsm::load_run_config(std::string(CRSM_SOURCE_DIR) + "/configs/" + name + ".json");
    EXPECT_GT(c.model.d_model, 0) << name;
  }
  const auto large = crsm::load_run_config(std::string(CRSM_SOURCE_DIR) + "/configs/large.json");
  EXPECT_EQ(large.model.d_model, 2048);
  EXPECT_EQ(large.model.num_layers, 24);
  EXPECT_EQ(large.model.d_ffn, 8192);
  EXPECT_EQ(large.model.vocab_size, 32000);
  EXPECT_EQ(large.train.seq_len, 512);
}

TEST(RunConfig, TinyBatchSplitsOverOneToFourRanks) {
  const auto tiny = crsm::load_run_config(std::string(CRSM_SOURCE_DIR) + "/configs/tiny.json");
  for (int w = 1; w <= 4; ++w) EXPECT_EQ(tiny.train.batch_size % w, 0) << "world size " << w;
}

TEST(RunConfig, DefaultsFillMissingKeys) {
  const auto c = parse_run_config(json{{"d_model", 64}}, "x");
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.expand, 2);
  EXPECT_EQ(c.model.d_conv, 4);
  EXPECT_EQ(c.model.resolved_dt_rank(), 4);  // ceil(64 / 16)
  EXPECT_EQ(c.model.norm, "rmsnorm");
  EXPECT_FALSE(c.model.tie_embeddings);
}

TEST(RunConfig, RoundTripsThroughJson) {
  auto c = parse_run_config(json{{"d_model", 96}, {"dt_rank", 5}, {"device", "cuda:1"}}, "x");
  const auto again = parse_run_config(crsm::to_json(c), "again");
  EXPECT_EQ(crsm::to_json(again), crsm::to_json(c));
  EXPECT_EQ(again.model.dt_rank, 5);
}

TEST(RunConfig, UnknownKeyIsNamed) {
  const auto msg = error_of(json{{"d_model", 64}, {"d_modle", 3}});
  EXPECT_NE(msg.find("unknown key 'd_modle'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("test.json"), std::string::npos) << msg;
}

TEST(RunConfig, WrongTypesAreNamed) {
  EXPECT_NE(error_of(json{{"d_model", "128"}}).find("key 'd_model'"), std::string::npos);
  EXPECT_NE(error_of(json{{"num_layers", 2.5}}).find("key 'num_layers'"), std::string::npos);
  EXPECT_NE(error_of(json{{"tie_embeddings", 1}}).find("key 'tie_embeddings'"), std::string::npos);
  EXPECT_NE(error_of(json{{"lr", "fast"}}).find("key 'lr'"), std::string::npos);
  EXPECT_NE(error_of(json::array()).find("JSON object"), std::string::npos);
}

TEST(RunConfig, ImpossibleValuesAreNamed) {
  EXPECT_NE(error_of(json{{"d_model", 0}}).find("key 'd_model'"), std::string::npos);
  EXPECT_NE(error_of(json{{"vocab_size", -5}}).find("key 'vocab_size'"), std::string::npos);
  EXPECT_NE(error_of(json{{"dropout", 1.0}}).find("key 'dropout'"), std::string::npos);
  EXPECT_NE(error_of(json{{"dropout", -0.1}}).find("key 'dropout'"), std::string::npos);
  EXPECT_NE(error_of(json{{"lr", 0.0}}).find("key 'lr'"), std::string::npos);
  EXPECT_NE(error_of(json{{"norm", "layernorm"}}).find("key 'norm'"), std::string::npos);
  EXPECT_NE(error_of(json{{"device", "gpu"}}).find("key 'device'"), std::string::npos);
  EXPECT_NE(error_of(json{{"d_model", 4}, {"dt_rank", 9}}).find("key 'dt_rank'"),
            std::string::npos);
}

TEST(RunConfig, SearchKeysHaveDefaultsAndBounds) {
  const auto c = parse_run_config(json::object(), "x");
  EXPECT_EQ(c.search.top_k, 16);
  EXPECT_EQ(c.search.leaf_batch, 16);
  EXPECT_EQ(c.search.n_simulations, 50);
  const std::vector<std::pair<std::string, json>> bad = {
      {"c_puct", -1},        {"n_simulations", 0}, {"top_k", 0},          {"leaf_batch", 0},
      {"injection_rate", 1.5}, {"delta_decay", -0.1}, {"max_lag", -1},     {"temperature", -0.5},
      {"top_p", 0.0},        {"top_p", 1.5},       {"leaf_batch", "many"}};
  for (const auto& [key, value] : bad)
    EXPECT_NE(error_of(json{{key, value}}).find("key '" + key + "'"), std::string::npos) << key << " " << value;
}

TEST(RunConfig, MalformedAndMissingFilesAreNamed) {
  const auto path = std::filesystem::temp_directory_path() / "crsm_bad_config.json";
  std::ofstream(path) << "{\"d_model\": 12,";
  try {
    crsm::load_run_config(path.string());
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("malformed JSON"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(crsm::load_run_config("/nonexistent/config.json"), ConfigError);
}

}  // namespace
