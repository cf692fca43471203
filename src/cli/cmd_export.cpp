#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "checkpoint/store.h"
#include "model/tensor_file.h"
#include "checkpoint/training_checkpoint.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& export_options() {
  static const std::vector<Option> table = {
      Option("checkpoint", Constraint::path(), "checkpoint directory, or a run directory (its newest complete checkpoint)").mandatory(),
      Option("output", Constraint::path(), "safetensors file to write (not inside the checkpoint it reads; in its run directory only beside the run's files)").mandatory(),
      Option("force", Constraint::boolean(), "replace --output if it exists (atomically: only by a complete file)"),
  };
  return table;
}

}  // namespace

int export_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train export --checkpoint DIR --output model.safetensors",
                                    export_options());
  if (!parsed) return 0;
  const auto spec = parsed->text("checkpoint");
  const auto output = parsed->text("output");
  std::vector<std::string> skipped;
  const std::string dir = checkpoint::resolve_checkpoint(spec, "--checkpoint", &skipped);
  check_output_file("--output", output, parsed->is_set("force"), checkpoint_inputs(dir, spec));
  RunConfig config;
  auto model = checkpoint::load_checkpoint_model(dir, &config);
  // safetensors metadata is string to string: the config travels as JSON text.
  write_output_file(output, [&] {
    model::save_tensor_file(output, model::module_tensors(*model),
                            {{"format", "crsm-backbone"}, {"config", to_json(config).dump()}, {"source", dir}});
  });
  std::printf("export: %s -> %s\n", dir.c_str(), output.c_str());
  return 0;
}

}  // namespace crsm::cli
