// crsm_train: one binary for every stage, so `mpirun -np 8 crsm_train train ...` and a
// Slurm script launch the same program a user runs by hand.
#include <boost/program_options/errors.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"

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

int usage(std::FILE* out) {
  std::fprintf(out, "usage: crsm_train COMMAND [OPTIONS]   (crsm_train COMMAND --help for options)\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  return out == stdout ? 0 : crsm::cli::kExitUsage;
}

// With several ranks, one that fails must take the others down with it: they may be
// waiting for it in a collective and would hang.
int fail(int status) {
  if (crsm::dist::runtime().world_size > 1) {
    std::fflush(stdout);
    std::fflush(stderr);
    crsm::dist::abort_job(status);
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::prepare_blas_environment(argv);
  crsm::dist::init_runtime(&argc, &argv);
  if (argc < 2) return usage(stderr);
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") return usage(stdout);
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const boost::program_options::error& e) {
      std::fprintf(stderr, "%scrsm_train %s: %s (see crsm_train %s --help)\n",
                   crsm::dist::rank_prefix().c_str(), c.name, e.what(), c.name);
      return fail(crsm::cli::kExitUsage);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%scrsm_train %s: error: %s\n", crsm::dist::rank_prefix().c_str(), c.name,
                   e.what());
      return fail(crsm::cli::kExitUsage);
    }
  }
  std::fprintf(stderr, "crsm_train: unknown command '%s'\n", name.c_str());
  return usage(stderr);
}
