#include <cstdio>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "train/loss_plot.h"
#include "train/metrics_log.h"

namespace crsm::cli {

int plot_command(int argc, char** argv) {
  po::options_description o("crsm_train plot options");
  o.add_options()
      ("run", po::value<std::vector<std::string>>()->multitoken()->required(), "run directories (positional)")
      ("output", po::value<std::string>()->default_value("loss.svg"), "SVG file to write")
      ("title", po::value<std::string>()->default_value("loss"), "chart title");
  po::positional_options_description positional;
  positional.add("run", -1);
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: crsm_train plot RUN_DIR... [--output loss.svg]", o, vm, &positional))
    return 0;
  std::vector<train::RunMetrics> runs;
  for (const auto& dir : vm["run"].as<std::vector<std::string>>()) runs.push_back(train::read_metrics(dir));
  const auto output = vm["output"].as<std::string>();
  train::write_loss_plot(runs, output, vm["title"].as<std::string>());
  std::printf("plot: %zu run(s) -> %s\n", runs.size(), output.c_str());
  return 0;
}

}  // namespace crsm::cli
