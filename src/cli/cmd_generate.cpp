#include <cstdio>
#include <vector>

#include <torch/torch.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "data/tokenizer.h"
#include "dist/checkpoint_store.h"
#include "dist/cpu_setup.h"
#include "model/generation.h"
#include "train/train_checkpoint.h"

namespace crsm::cli {

int generate_command(int argc, char** argv) {
  po::options_description o("crsm_train generate options");
  o.add_options()
      ("model", po::value<std::string>()->required(), "checkpoint directory, or a run directory (its newest complete checkpoint)")
      ("prompt", po::value<std::string>()->default_value(""), "text to continue (empty: start from <bos>)")
      ("max-length", po::value<int64_t>()->default_value(200), "new tokens to generate at most")
      ("temperature", po::value<double>()->default_value(0.8, "0.8"), "softmax temperature (0: greedy)")
      ("top-k", po::value<int64_t>()->default_value(0), "sample among the k most likely tokens (0: all)")
      ("top-p", po::value<double>()->default_value(1.0), "sample within the smallest set of this probability mass")
      ("seed", po::value<uint64_t>()->default_value(0), "sampling seed (same seed, same text)")
      ("device", po::value<std::string>()->default_value("cpu"), "cpu | cuda | cuda:N")
      ("threads", po::value<int>()->default_value(0), "CPU threads (0: all cores)");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: crsm_train generate --model DIR --prompt TEXT [options]", o, vm)) return 0;
  const auto temperature = vm["temperature"].as<double>();
  const auto top_p = vm["top-p"].as<double>();
  if (temperature < 0) throw std::invalid_argument("--temperature must be >= 0");
  if (top_p <= 0 || top_p > 1) throw std::invalid_argument("--top-p must be in (0, 1]");
  if (vm["max-length"].as<int64_t>() < 0) throw std::invalid_argument("--max-length must be >= 0");
  dist::configure_threads(vm["threads"].as<int>(), 1);

  const auto spec = vm["model"].as<std::string>();
  std::vector<std::string> skipped;
  const std::string dir = *dist::resolve_resume(spec, spec, &skipped, "--model");
  for (const auto& note : skipped) std::fprintf(stderr, "generate: %s\n", note.c_str());
  auto tokenizer = data::load_tokenizer(dir);
  RunConfig config;
  auto model = train::load_checkpoint_model(dir, &config);
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, dir);
  model->to(torch::Device(vm["device"].as<std::string>()));

  const std::string prompt_text = vm["prompt"].as<std::string>();
  std::vector<int64_t> prompt{tokenizer->bos_id()};
  for (int32_t id : tokenizer->encode(prompt_text)) prompt.push_back(id);
  std::fputs(prompt_text.c_str(), stdout);
  model::SamplingOptions sampling{temperature, vm["top-k"].as<int64_t>(), top_p};
  // Decoding the whole continuation each time and printing what is new keeps
  // tokenizers that merge pieces across token boundaries (SentencePiece spaces) right.
  std::vector<int32_t> generated;
  size_t printed = 0;
  model::generate(model, prompt, vm["max-length"].as<int64_t>(), sampling, vm["seed"].as<uint64_t>(),
                  tokenizer->eos_id(), [&](int64_t token) {
                    generated.push_back(static_cast<int32_t>(token));
                    const std::string text = tokenizer->decode(generated);
                    if (text.size() > printed) {
                      std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
                      std::fflush(stdout);
                      printed = text.size();
                    }
                  });
  std::fputs("\n", stdout);
  return 0;
}

}  // namespace crsm::cli
