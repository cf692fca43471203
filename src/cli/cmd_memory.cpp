#include <algorithm>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "config/run_config.h"
#include "dist/data_parallel.h"
#include "dist/flat_layout.h"
#include "model/activation_memory.h"
#include "model/backbone.h"
#include "model/parameter_count.h"
#include "train/adamw.h"
#include "config/memory_plan.h"
#include "train/trainable.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& memory_options() {
  static const std::vector<Option> table = {
      Option("config", Constraint::path(), "JSON config of the model").mandatory(),
      Option("world", Constraint::integer_list(1, 1 << 20), "world sizes, comma-separated").with_default("1,8,64"),
      Option("bucket-mb", Constraint::number(1e-3, 4096), "gradient bucket size in MiB").with_default("4"),
      Option("stage4", Constraint::boolean(), "count the value heads as trainable (fine-tuning)"),
      Option("micro-batch", Constraint::integer(1, 1 << 24), "sequences per rank per micro-batch (default: the config's batch_size / ranks)"),
      Option("gpu-gib", Constraint::integer_list(1, 1 << 20), "GPU memories (GiB) to find the largest per-rank batch for").with_default("40,80"),
  };
  return table;
}

// The table sizes GPU runs, which take the plain convolution.
constexpr model::ConvKernel kGpuConvolution = model::ConvKernel::kPlain;

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1LL << 30));
  return buf;
}

// The most sequences per rank whose activations fit beside `state` bytes in `memory`.
int64_t largest_batch(const model::ModelConfig& cfg, int64_t seq_len, double state, double memory, bool checkpointed) {
  const auto fits = [&](int64_t rows) {
    const auto a = model::activation_bytes(cfg, rows, seq_len, kGpuConvolution);
    return state + (checkpointed ? a.checkpointed : a.full) <= memory;
  };
  if (!fits(1)) return 0;
  int64_t lo = 1, hi = 2;
  while (fits(hi) && hi < (int64_t{1} << 30)) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
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
    throw UsageError(parsed->text("config") + ": " + format_bytes(count * 4) + " of weights in " +
                     format_bytes(static_cast<double>(bucket_bytes)) +
                     " buckets: more than this table lays out (2^40 parameters, 2^24 buckets)");

  std::vector<dist::ParamInfo> params;
  for (const auto& [name, shape] : model::parameter_shapes(config.model)) {
    if (train::is_value_head(name) && !parsed->is_set("stage4")) continue;
    params.push_back({name, shape, train::decays(name, static_cast<int64_t>(shape.size())),
                      model::parameter_unit(config.model, name)});
  }
  const int64_t seq_len = config.train.seq_len;
  std::printf("Training memory per rank, %s (%lld trainable fp32 parameters, AdamW, %g MiB buckets; float32\n"
              "activations of a micro-batch of sequences of %lld tokens at the peak of a step, with and without\n"
              "activation checkpointing; the CUDA allocator's own overhead is not counted):\n\n",
              parsed->text("config").c_str(),
              static_cast<long long>(dist::FlatLayout(params, 1, bucket_bytes / 4).data_elements()),
              parsed->number("bucket-mb"), static_cast<long long>(seq_len));
  std::printf("| ranks | zero stage | parameters | gradients | optimizer state | sequences per rank | activations | total | "
              "activations, checkpointed | total, checkpointed |\n");
  std::printf("|------:|-----------:|-----------:|----------:|----------------:|---:|---:|---:|---:|---:|\n");
  const auto gpus = parsed->integers("gpu-gib");
  std::string fits = "| ranks | zero stage |", rule = "|------:|-----------:|";
  for (const int64_t g : gpus) {
    fits += " " + std::to_string(g) + " GiB | " + std::to_string(g) + " GiB, checkpointed |";
    rule += "---:|---:|";
  }
  fits += "\n" + rule + "\n";
  for (const int64_t world : parsed->integers("world")) {
    const int64_t rows = parsed->has("micro-batch") ? parsed->integer("micro-batch")
                                                    : std::max<int64_t>(1, config.train.batch_size / world);
    const auto act = model::activation_bytes(config.model, rows, seq_len, kGpuConvolution);
    for (int stage = 0; stage <= 3; ++stage) {
      const auto zero = dist::ZeroPolicy::for_stage(stage);  // the table has a row per stage
      const auto m = dist::planned_memory(dist::zero_layout(params, static_cast<int>(world), bucket_bytes / 4, zero), zero, 4);
      const double state = static_cast<double>(m.params + m.grads + m.optimizer);
      std::printf("| %lld | %d | %s | %s | %s | %lld | %s | %s | %s | %s |\n", static_cast<long long>(world), stage,
                  gib(m.params).c_str(), gib(m.grads).c_str(), gib(m.optimizer).c_str(), static_cast<long long>(rows),
                  gib(act.full).c_str(), gib(state + act.full).c_str(), gib(act.checkpointed).c_str(),
                  gib(state + act.checkpointed).c_str());
      fits += "| " + std::to_string(world) + " | " + std::to_string(stage) + " |";
      for (const int64_t g : gpus)
        for (const bool checkpointed : {false, true})
          fits += " " + std::to_string(largest_batch(config.model, seq_len, state, static_cast<double>(g) * (1LL << 30),
                                                     checkpointed)) + " |";
      fits += "\n";
    }
  }
  std::printf("\nThe most sequences of %lld tokens per rank whose training step fits, by GPU memory:\n\n%s",
              static_cast<long long>(seq_len), fits.c_str());
  return 0;
}

}  // namespace crsm::cli
