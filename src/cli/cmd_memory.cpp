#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "config/run_config.h"
#include "dist/data_parallel.h"
#include "dist/flat_layout.h"
#include "model/parameter_count.h"
#include "train/adamw.h"
#include "train/memory_fit.h"
#include "train/trainable.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& memory_options() {
  static const std::vector<Option> table = {
      Option("config", Constraint::path(), "JSON config of the model").mandatory(),
      Option("world", Constraint::integer_list(1, 1 << 20), "world sizes, comma-separated").with_default("1,8,64"),
      Option("bucket-mb", Constraint::number(1e-3, 4096), "gradient bucket size in MiB").with_default("4"),
      Option("stage4", Constraint::boolean(), "count the value heads as trainable (fine-tuning)"),
  };
  return table;
}

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1LL << 30));
  return buf;
}

}  // namespace

int memory_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train memory --config FILE [--world 1,8,64]", memory_options());
  if (!parsed) return 0;
  const auto config = load_run_config(parsed->text("config"));
  const auto bucket_bytes = static_cast<int64_t>(parsed->number("bucket-mb") * (1 << 20));
  // The layout below holds one record per bucket and counts bytes in int64.
  const double count = model::approximate_parameter_count(config.model);
  if (count > 0x1p40 || count * 4 / static_cast<double>(bucket_bytes) > 0x1p24)
    throw UsageError(parsed->text("config") + ": " + train::format_bytes(count * 4) + " of weights in " +
                     train::format_bytes(static_cast<double>(bucket_bytes)) +
                     " buckets: more than this table lays out (2^40 parameters, 2^24 buckets)");

  std::vector<dist::ParamInfo> params;
  for (const auto& [name, shape] : model::parameter_shapes(config.model)) {
    if (train::is_value_head(name) && !parsed->is_set("stage4")) continue;
    params.push_back({name, shape, train::decays(name, static_cast<int64_t>(shape.size()))});
  }
  std::printf("Training state per rank, %s (%lld trainable fp32 parameters, AdamW, %g MiB buckets):\n\n",
              parsed->text("config").c_str(),
              static_cast<long long>(dist::FlatLayout(params, 1, bucket_bytes / 4).data_elements()),
              parsed->number("bucket-mb"));
  std::printf("| ranks | zero stage | parameters | gradients | optimizer state | total |\n");
  std::printf("|------:|-----------:|-----------:|----------:|----------------:|------:|\n");
  for (const int64_t world : parsed->integers("world")) {
    const dist::FlatLayout layout(params, static_cast<int>(world), bucket_bytes / 4);
    for (int stage = 0; stage <= 2; ++stage) {
      const auto m = dist::planned_memory(layout, stage, 4);
      std::printf("| %lld | %d | %s | %s | %s | %s |\n", static_cast<long long>(world), stage, gib(m.params).c_str(),
                  gib(m.grads).c_str(), gib(m.optimizer).c_str(), gib(m.params + m.grads + m.optimizer).c_str());
    }
  }
  return 0;
}

}  // namespace crsm::cli
