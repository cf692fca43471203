#include <cstdio>
#include <sstream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "config/run_config.h"
#include "dist/data_parallel.h"
#include "dist/flat_layout.h"
#include "model/parameter_count.h"
#include "train/adamw.h"
#include "train/trainable.h"

namespace crsm::cli {
namespace {

std::vector<int> parse_worlds(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    int w = 0;
    try {
      w = std::stoi(item);
    } catch (const std::exception&) {
      w = 0;
    }
    if (w < 1) throw std::invalid_argument("--world " + text + ": expected positive integers separated by commas");
    out.push_back(w);
  }
  return out;
}

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1LL << 30));
  return buf;
}

}  // namespace

int memory_command(int argc, char** argv) {
  po::options_description o("crsm_train memory options");
  o.add_options()
      ("config", po::value<std::string>()->required(), "JSON config of the model")
      ("world", po::value<std::string>()->default_value("1,8,64"), "world sizes, comma-separated")
      ("bucket-mb", po::value<double>()->default_value(4.0, "4"), "gradient bucket size in MiB")
      ("stage4", po::bool_switch(), "count the value heads as trainable (fine-tuning)");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: crsm_train memory --config FILE [--world 1,8,64]", o, vm)) return 0;
  const auto config = load_run_config(vm["config"].as<std::string>());
  const auto worlds = parse_worlds(vm["world"].as<std::string>());
  const auto bucket_bytes = static_cast<int64_t>(vm["bucket-mb"].as<double>() * (1 << 20));
  if (bucket_bytes < 4) throw std::invalid_argument("--bucket-mb must be positive");

  std::vector<dist::ParamInfo> params;
  for (const auto& [name, shape] : model::parameter_shapes(config.model)) {
    if (train::is_value_head(name) && !vm["stage4"].as<bool>()) continue;
    params.push_back({name, shape, train::decays(name, static_cast<int64_t>(shape.size()))});
  }
  std::printf("Training state per rank, %s (%lld trainable fp32 parameters, AdamW, %.0f MiB buckets):\n\n",
              vm["config"].as<std::string>().c_str(),
              static_cast<long long>(dist::FlatLayout(params, 1, bucket_bytes / 4).data_elements()),
              vm["bucket-mb"].as<double>());
  std::printf("| ranks | zero stage | parameters | gradients | optimizer state | total |\n");
  std::printf("|------:|-----------:|-----------:|----------:|----------------:|------:|\n");
  for (int world : worlds) {
    const dist::FlatLayout layout(params, world, bucket_bytes / 4);
    for (int stage = 0; stage <= 2; ++stage) {
      const auto m = dist::planned_memory(layout, stage, 4);
      std::printf("| %d | %d | %s | %s | %s | %s |\n", world, stage, gib(m.params).c_str(),
                  gib(m.grads).c_str(), gib(m.optimizer).c_str(),
                  gib(m.params + m.grads + m.optimizer).c_str());
    }
  }
  return 0;
}

}  // namespace crsm::cli
