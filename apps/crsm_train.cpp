// crsm_train: one binary for every stage, so `mpirun -np 8 crsm_train train ...` and a
// Slurm script launch the same program a user runs by hand.
#include <boost/program_options/errors.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "train/exit_status.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"prepare", crsm::cli::prepare_command, "tokenize text files into token shards"},
    {"train", crsm::cli::train_command, "train the backbone (stage 1) or fine-tune with value heads (stage 4)"},
    {"generate", crsm::cli::generate_command, "sample text from a checkpoint in recurrent mode"},
    {"export", crsm::cli::export_command, "write a checkpoint's model as safetensors"},
    {"plot", crsm::cli::plot_command, "draw train/val loss curves of runs to an SVG file"},
    {"memory", crsm::cli::memory_command, "tabulate per-rank training memory by world size and zero stage"},
};

std::string usage() {
  std::string text = "usage: crsm_train COMMAND [OPTIONS]   (crsm_train COMMAND --help for options)\n\ncommands:";
  char line[160];
  for (const auto& c : kCommands) {
    std::snprintf(line, sizeof line, "\n  %-10s %s", c.name, c.summary);
    text += line;
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  using crsm::dist::fail_job;
  crsm::dist::prepare_blas_environment(argv);
  crsm::dist::init_runtime(&argc, &argv);
  if (argc < 2) fail_job(crsm::train::kExitBadInput, usage());
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    if (crsm::dist::runtime().is_root()) std::printf("%s\n", usage().c_str());
    return 0;
  }
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const boost::program_options::error& e) {
      fail_job(crsm::train::kExitBadInput, "crsm_train " + name + ": " + e.what() + " (see crsm_train " + name +
                                          " --help)");
    } catch (const crsm::dist::CommTimeout& e) {
      fail_job(crsm::train::kExitCollectiveTimeout, "crsm_train " + name + ": error: " + e.what());
    } catch (const std::exception& e) {
      fail_job(crsm::train::kExitBadInput, "crsm_train " + name + ": error: " + e.what());
    }
  }
  fail_job(crsm::train::kExitBadInput, "crsm_train: unknown command '" + name + "'\n" + usage());
}
