#include <gtest/gtest.h>
#include <torch/torch.h>

#include "config/run_config.h"
#include "model/backbone.h"
#include "model/parameter_count.h"

namespace {

int64_t counted(const crsm::model::ModelConfig& cfg) {
  crsm::model::Backbone model(cfg);
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  return n;
}

TEST(ParameterCount, BuiltModelsMatchTheAnalyticCount) {
  for (const char* name : {"tiny", "small", "medium"}) {
    const auto cfg =
        crsm::load_run_config(std::string(CRSM_SOURCE_DIR) + "/configs/" + name + ".json").model;
    EXPECT_EQ(counted(cfg), crsm::model::analytic_parameter_count(cfg)) << name;
  }
}

TEST(ParameterCount, VariantsMatchTheAnalyticCount) {
  crsm::model::ModelConfig cfg;
  cfg.d_model = 40;
  cfg.tie_embeddings = true;
  cfg.dt_rank = 7;
  cfg.expand = 3;
  cfg.d_conv = 2;
  EXPECT_EQ(counted(cfg), crsm::model::analytic_parameter_count(cfg));
}

TEST(ParameterCount, AnalyticShapesListTheModelsParametersInOrder) {
  crsm::model::ModelConfig cfg;
  cfg.d_model = 24;
  cfg.num_layers = 2;
  crsm::model::Backbone model(cfg);
  const auto params = model->named_parameters(/*recurse=*/true);
  const auto shapes = crsm::model::parameter_shapes(cfg);
  ASSERT_EQ(params.size(), shapes.size());
  for (size_t i = 0; i < shapes.size(); ++i) {
    EXPECT_EQ(params[i].key(), shapes[i].first) << i;
    EXPECT_EQ(params[i].value().sizes().vec(), shapes[i].second) << shapes[i].first;
  }
}

TEST(ParameterCount, LargeConfigCountQuotedInTheReadme) {
  const auto cfg =
      crsm::load_run_config(std::string(CRSM_SOURCE_DIR) + "/configs/large.json").model;
  EXPECT_EQ(crsm::model::analytic_parameter_count(cfg), 1571325976);
}

}  // namespace
