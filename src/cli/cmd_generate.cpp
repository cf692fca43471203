#include <cstdio>
#include <vector>

#include <torch/torch.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "data/tokenizer.h"
#include "dist/checkpoint_store.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "model/generation.h"
#include "train/train_checkpoint.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& generate_options() {
  static const std::vector<Option> table = {
      Option("model", Constraint::path(), "checkpoint directory, or a run directory (its newest complete checkpoint)").mandatory(),
      Option("prompt", Constraint::text(), "text to continue (empty: start from <bos>)").with_default(""),
      Option("max-length", Constraint::integer(0, 1 << 24), "new tokens to generate at most").with_default("200"),
      Option("temperature", Constraint::number(0, 1000), "softmax temperature (0: greedy)").with_default("0.8"),
      Option("top-k", Constraint::integer(0, (int64_t{1} << 31) - 1), "sample among the k most likely tokens (0: all)").with_default("0"),
      Option("top-p", Constraint::number(0, 1, /*lo_open=*/true), "sample within the smallest set of this probability mass").with_default("1"),
      Option("seed", config_constraint("seed"), "sampling seed (same seed, same text)").with_default("0"),
      Option("device", config_constraint("device"), "cpu | cuda | cuda:N").with_default("cpu"),
      Option("threads", Constraint::integer(0, 4096), "CPU threads (0: all cores)").with_default("0"),
  };
  return table;
}

}  // namespace

int generate_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train generate --model DIR --prompt TEXT [options]",
                                    generate_options());
  if (!parsed) return 0;
  const ParsedOptions& o = *parsed;
  const torch::Device device = dist::rank_device(o.text("device"), dist::runtime());
  dist::configure_threads(static_cast<int>(o.integer("threads")), 1);

  const auto spec = o.text("model");
  std::vector<std::string> skipped;
  const std::string dir = dist::resolve_checkpoint(spec, "--model", &skipped);
  for (const auto& note : skipped) std::fprintf(stderr, "generate: %s\n", note.c_str());
  auto tokenizer = data::load_tokenizer(dir);
  RunConfig config;
  auto model = train::load_checkpoint_model(dir, &config);
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, dir);
  model->to(device);

  const std::string prompt_text = o.text("prompt");
  std::vector<int64_t> prompt{tokenizer->bos_id()};
  for (int32_t id : tokenizer->encode(prompt_text)) prompt.push_back(id);
  std::fputs(prompt_text.c_str(), stdout);
  model::SamplingOptions sampling{o.number("temperature"), o.integer("top-k"), o.number("top-p")};
  // Decoding the whole continuation each time and printing what is new keeps
  // tokenizers that merge pieces across token boundaries (SentencePiece spaces) right.
  std::vector<int32_t> generated;
  size_t printed = 0;
  model::generate(model, prompt, o.integer("max-length"), sampling, static_cast<uint64_t>(o.integer("seed")),
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
