// python/crsm.py held to crsm_train: a tiny model is trained and exported by the real
// binary, the C++ model loaded from the export writes its logits on fixed tokens, and
// tests/python/check_python_module.py compares the Python module's against them and
// against `crsm_train generate`'s greedy text.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "../cli/cli_test_support.h"
#include "config/run_config.h"
#include "model/backbone.h"
#include "model/tensor_file.h"

namespace crsm::testing {
namespace {

const std::string kSource = CRSM_SOURCE_DIR;
const std::string kPrompt = "Before we proceed any further, hear me speak.";
constexpr int64_t kMaxLength = 80;
constexpr int64_t kPrefill = 11;

// Two rows of 24 ids: text, and ids spread over the whole vocabulary with <bos>, <eos>.
torch::Tensor fixed_tokens() {
  const std::string text = "First Citizen:\nBefore we";
  auto row0 = torch::empty({24}, torch::kLong);
  for (int64_t t = 0; t < 24; ++t) row0[t] = static_cast<unsigned char>(text[t]);
  auto row1 = (torch::arange(24, torch::kLong) * 37 + 11).remainder(258);
  row1[0] = 256;
  row1[5] = 257;
  return torch::stack({row0, row1});
}

std::pair<torch::Tensor, torch::Tensor> by_steps(model::Backbone& m, const torch::Tensor& tokens,
                                                 model::ModelState& state, int64_t first) {
  std::vector<torch::Tensor> logits, values;
  for (int64_t t = first; t < tokens.size(1); ++t) {
    const auto out = m->step(tokens.select(1, t), state);
    logits.push_back(out.logits);
    values.push_back(out.values);
  }
  return {torch::stack(logits, 1), torch::stack(values, 1)};
}

// The export loaded as crsm_train's own code loads a model: its outputs on fixed_tokens()
// in parallel mode, step by step from the empty state, and step by step after a prefill.
void write_reference(const std::string& exported, const std::string& out) {
  std::map<std::string, std::string> metadata;
  const auto tensors = model::load_tensor_file(exported, &metadata);
  const RunConfig config = parse_run_config(nlohmann::json::parse(metadata.at("config")), exported);
  model::Backbone m(config.model);
  model::load_module_tensors(*m, tensors, exported);
  m->eval();
  torch::NoGradGuard no_grad;
  const auto tokens = fixed_tokens();
  const auto parallel = m->forward(tokens);
  auto state = m->empty_state(tokens.size(0));
  const auto [step_logits, step_values] = by_steps(m, tokens, state, 0);
  model::ModelState prefilled;
  const auto prompt = m->prefill(tokens.narrow(1, 0, kPrefill), prefilled);
  const auto after = by_steps(m, tokens, prefilled, kPrefill).first;
  model::save_tensor_file(out,
                          {{"tokens", tokens},
                           {"parallel_logits", parallel.logits},
                           {"parallel_values", parallel.values},
                           {"recurrent_logits", step_logits},
                           {"recurrent_values", step_values},
                           {"prefill_logits", torch::cat({prompt.logits.unsqueeze(1), after}, 1)}},
                          {{"prefill", std::to_string(kPrefill)}});
}

// A tiny run on the first 100 kB of Tiny Shakespeare, its export and its greedy text,
// made by crsm_train as a user makes them.
void make_run(const ScratchDir& dir, const std::string& config_flags) {
  std::ifstream in(kSource + "/data/tinyshakespeare.txt", std::ios::binary);
  std::string text(100000, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  ASSERT_TRUE(in) << "data/tinyshakespeare.txt";
  std::ofstream(dir.str("text.txt"), std::ios::binary) << text;
  const auto trained = run_command(crsm_train("train --config " + kSource + "/configs/tiny.json --data " +
                                               dir.str("text.txt") + " --checkpoint-dir " + dir.str("run") +
                                               " --no-value-loss --max-steps 200 --eval-every 0 --log-every 100 "
                                               "--threads 1 " + config_flags));
  ASSERT_EQ(trained.status, 0) << trained.output;
  const auto exported =
      run_command(crsm_train("export --checkpoint " + dir.str("run") + " --output " + dir.str("model.safetensors")));
  ASSERT_EQ(exported.status, 0) << exported.output;
  // Braces: only stdout goes to the file, stderr stays with the output shown on failure.
  const auto greedy = run_command("{ " + crsm_train("generate --model " + dir.str("run") + " --prompt '" + kPrompt +
                                                     "' --max-length " + std::to_string(kMaxLength) +
                                                     " --temperature 0 --threads 1 > " + dir.str("greedy.txt")) +
                                  "; }");
  ASSERT_EQ(greedy.status, 0) << greedy.output;
}

std::string python_check(const ScratchDir& dir) {
  return "OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=" + kSource + "/python /usr/bin/python3 " + kSource +
         "/tests/python/check_python_module.py " + dir.str("model.safetensors") + " " +
         dir.str("reference.safetensors") + " " + dir.str("greedy.txt") + " --run " + dir.str("run") + " --prompt '" +
         kPrompt + "' --max-length " + std::to_string(kMaxLength);
}

// Each variant changes what the module must read from the config: tied embeddings have
// no lm_head, and d_conv, dt_rank and expand change every mixer shape.
class PythonModule : public ::testing::TestWithParam<const char*> {};

TEST_P(PythonModule, MatchesCrsmTrainLogitsAndGreedyTextAndNoticesOnePerturbedWeight) {
  ScratchDir dir("python_module");
  ASSERT_NO_FATAL_FAILURE(make_run(dir, GetParam()));
  write_reference(dir.str("model.safetensors"), dir.str("reference.safetensors"));
  const auto same = run_command(python_check(dir));
  std::cout << same.output;  // the measured differences, in the test's log
  EXPECT_EQ(same.status, 0) << same.output;
  // The comparison can fail: one weight moved by 1e-3 is out of tolerance.
  const auto perturbed = run_command(python_check(dir) + " --perturb layers.1.mixer.out_proj.weight");
  EXPECT_EQ(perturbed.status, 1) << perturbed.output;
  EXPECT_NE(perturbed.output.find("FAIL: parallel logits differ"), std::string::npos) << perturbed.output;
  EXPECT_NE(perturbed.output.find("FAIL: recurrent logits"), std::string::npos) << perturbed.output;
}

INSTANTIATE_TEST_SUITE_P(Configs, PythonModule,
                         ::testing::Values("", "--set tie_embeddings=true --set d_conv=3 --set dt_rank=5 --set expand=1"),
                         [](const auto& info) { return std::string(info.index == 0 ? "TinyJson" : "TiedShortConv"); });

// d_ffn 0, the Mamba-1 block, trained (at ZeRO stage 3: its units are the blocks without
// the branch), checkpointed, sampled by crsm_train generate and exported both ways: the
// module holds the crsm export to C++ as above, finds transformers' keys and names in the
// Hugging Face directory (check_python_module.py lists them from transformers' source)
// and gets the crsm export's logits from it within 1e-5.
TEST(PythonModuleHf, LoadsTheHuggingFaceExportWithTheCrsmExportsLogits) {
  ScratchDir dir("python_module_hf");
  ASSERT_NO_FATAL_FAILURE(make_run(dir, "--set d_ffn=0 --set d_conv=3 --zero-stage 3"));
  const auto exported = run_command(
      crsm_train("export --checkpoint " + dir.str("run") + " --format hf --output " + dir.str("hf")));
  ASSERT_EQ(exported.status, 0) << exported.output;
  EXPECT_NE(exported.output.find("the 2 value heads are dropped"), std::string::npos) << exported.output;
  write_reference(dir.str("model.safetensors"), dir.str("reference.safetensors"));
  const auto same = run_command(python_check(dir) + " --hf " + dir.str("hf"));
  std::cout << same.output;  // the measured differences, in the test's log
  EXPECT_EQ(same.status, 0) << same.output;
  EXPECT_NE(same.output.find("Hugging Face load's recurrent logits"), std::string::npos) << same.output;
  const auto perturbed = run_command(python_check(dir) + " --hf " + dir.str("hf") +
                                     " --perturb layers.0.mixer.x_proj.weight");
  EXPECT_EQ(perturbed.status, 1) << perturbed.output;
  EXPECT_NE(perturbed.output.find("FAIL: Hugging Face load's parallel logits differ"), std::string::npos)
      << perturbed.output;
}

}  // namespace
}  // namespace crsm::testing
