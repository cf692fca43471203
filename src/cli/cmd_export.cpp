#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/error.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "checkpoint/store.h"
#include "data/tokenizer.h"
#include "model/hf_layout.h"
#include "model/tensor_file.h"
#include "checkpoint/training_checkpoint.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& export_options() {
  static const std::vector<Option> table = {
      Option("checkpoint", Constraint::path(), "checkpoint directory, or a run directory (its newest complete checkpoint)").mandatory(),
      Option("output", Constraint::path(), "safetensors file to write, or with --format hf the directory (not inside the checkpoint it reads; in its run directory only beside the run's files)").mandatory(),
      Option("format", Constraint::word({"crsm", "hf"}), "crsm: one safetensors file with the whole model and its config (python/crsm.py reads it); hf: a directory with config.json and model.safetensors that transformers' MambaForCausalLM.from_pretrained loads (models with d_ffn 0 only; value heads dropped)").with_default("crsm"),
      Option("force", Constraint::boolean(), "replace --output (with --format hf, its config.json and model.safetensors) if it exists (atomically: only by a complete file)"),
  };
  return table;
}

// The whole model in one file; safetensors metadata is string to string: the config
// travels as JSON text.
void export_crsm(const std::string& dir, const std::string& output, model::Backbone& backbone, const RunConfig& config) {
  write_output_file(output, [&] {
    model::save_tensor_file(output, model::module_tensors(*backbone),
                            {{"format", "crsm-backbone"}, {"config", to_json(config).dump()}, {"source", dir}});
  });
  std::printf("export: %s -> %s\n", dir.c_str(), output.c_str());
}

// --format hf writes into a directory: the directory and each of its two files obey the
// output rules.
void check_hf_output(const std::string& output, bool force, const std::vector<Input>& inputs) {
  check_output_directory("--output", output, inputs);
  for (const char* file : {"model.safetensors", "config.json"})
    check_output_file("--output", (std::filesystem::path(output) / file).string(), force, inputs);
}

// MambaForCausalLM's directory. The weights go first and config.json last, so that a
// new directory with a config.json holds the weights it describes. transformers refuses
// a safetensors file whose metadata "format" is not "pt".
void export_hf(const std::string& dir, const std::string& output, model::Backbone& backbone, const RunConfig& config) {
  if (const std::string why = model::hf_incompatibility(config.model); !why.empty())
    throw UsageError("--format hf: the model in " + dir + " has no Hugging Face Mamba form: " + why);
  const auto tokenizer = data::load_tokenizer(dir);
  // No pad token of our own: padding with eos, as is usual for causal language models.
  const model::HfTokenIds ids{tokenizer->bos_id(), tokenizer->eos_id(), tokenizer->eos_id()};
  const std::string weights = (std::filesystem::path(output) / "model.safetensors").string();
  write_output_file(weights, [&] {
    model::save_tensor_file(weights, model::hf_tensors(model::module_tensors(*backbone)), {{"format", "pt"}, {"source", dir}});
    base::write_file_atomically((std::filesystem::path(output) / "config.json").string(),
                                model::hf_config(config.model, ids).dump(2) + "\n");
  });
  std::printf("export: %s -> %s (Hugging Face MambaForCausalLM: config.json, model.safetensors; the %lld value heads "
              "are dropped, transformers' model has none; no tokenizer files: pass crsm_train's token ids)\n",
              dir.c_str(), output.c_str(), static_cast<long long>(config.model.num_layers));
}

}  // namespace

int export_command(int argc, char** argv) {
  const auto parsed = parse_options(
      argc, argv, "usage: crsm_train export --checkpoint DIR --output model.safetensors [--format crsm]\n"
                  "       crsm_train export --checkpoint DIR --output HF_DIR --format hf",
      export_options());
  if (!parsed) return 0;
  const auto spec = parsed->text("checkpoint");
  const auto output = parsed->text("output");
  const bool hf = parsed->text("format") == "hf";
  std::vector<std::string> skipped;
  const std::string dir = checkpoint::resolve_checkpoint(spec, "--checkpoint", &skipped);
  const auto inputs = checkpoint_inputs(dir, spec);
  if (hf)
    check_hf_output(output, parsed->is_set("force"), inputs);
  else
    check_output_file("--output", output, parsed->is_set("force"), inputs);
  RunConfig config;
  auto model = checkpoint::load_checkpoint_model(dir, &config);
  if (hf)
    export_hf(dir, output, model, config);
  else
    export_crsm(dir, output, model, config);
  return 0;
}

}  // namespace crsm::cli
