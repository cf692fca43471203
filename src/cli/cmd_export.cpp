#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "dist/checkpoint_store.h"
#include "model/tensor_file.h"
#include "train/train_checkpoint.h"

namespace crsm::cli {

int export_command(int argc, char** argv) {
  po::options_description o("crsm_train export options");
  o.add_options()
      ("checkpoint", po::value<std::string>()->required(), "checkpoint directory, or a run directory (its newest complete checkpoint)")
      ("output", po::value<std::string>()->required(), "safetensors file to write (replaced only once complete)");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: crsm_train export --checkpoint DIR --output model.safetensors", o, vm)) return 0;
  const auto spec = vm["checkpoint"].as<std::string>();
  std::vector<std::string> skipped;
  const std::string dir = *dist::resolve_resume(spec, spec, &skipped, "--checkpoint");
  RunConfig config;
  auto model = train::load_checkpoint_model(dir, &config);
  const auto output = vm["output"].as<std::string>();
  // safetensors metadata is string to string: the config travels as JSON text.
  model::save_tensor_file(output, model::module_tensors(*model),
                          {{"format", "crsm-backbone"}, {"config", to_json(config).dump()},
                           {"source", dir}});
  std::printf("export: %s -> %s\n", dir.c_str(), output.c_str());
  return 0;
}

}  // namespace crsm::cli
