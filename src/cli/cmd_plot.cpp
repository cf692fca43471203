#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "metrics/loss_plot.h"
#include "metrics/metrics_log.h"

namespace crsm::cli {
namespace {

bool is_svg_name(const std::string& path) {
  return path.size() > 4 && path.compare(path.size() - 4, 4, ".svg") == 0;
}

const std::vector<Option>& plot_options() {
  static const std::vector<Option> table = {
      Option("run", Constraint::path(), "run directories (positional)").positional().mandatory(),
      Option("output", Constraint::satisfying(is_svg_name, "a file name ending in .svg (the plot is SVG)"),
             "SVG file to write (outside the runs it reads)")
          .with_default("loss.svg"),
      Option("force", Constraint::boolean(), "replace --output if it exists (atomically: only by a complete file)"),
      Option("title", Constraint::text(), "chart title").with_default("loss"),
  };
  return table;
}

}  // namespace

int plot_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train plot RUN_DIR... [--output loss.svg]", plot_options());
  if (!parsed) return 0;
  const auto output = parsed->text("output");
  std::vector<Input> inputs;
  for (const auto& dir : parsed->texts("run")) inputs.push_back({Input::Kind::kRun, dir});
  check_output_file("--output", output, parsed->is_set("force"), inputs);
  std::vector<metrics::RunMetrics> runs;
  for (const auto& dir : parsed->texts("run")) runs.push_back(metrics::read_metrics(dir));
  write_output_file(output, [&] { metrics::write_loss_plot(runs, output, parsed->text("title")); });
  std::printf("plot: %zu run(s) -> %s\n", runs.size(), output.c_str());
  return 0;
}

}  // namespace crsm::cli
