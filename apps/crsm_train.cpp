// crsm_train: one binary for every stage, so `mpirun -np 8 crsm_train train ...` and a
// Slurm script launch the same program a user runs by hand.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "cli/escaped_error.h"
#include "cli/run_record.h"
#include "cli/version.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "base/exit_status.h"

namespace {

using crsm::dist::fail_job;

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"prepare", crsm::cli::prepare_command, "tokenize text files into token shards"},
    {"prepare-arc", crsm::cli::prepare_arc_command, "generate ARC-format tasks of known families and a training corpus"},
    {"train", crsm::cli::train_command, "train the backbone (stage 1) or fine-tune with value heads (stage 4)"},
    {"distill", crsm::cli::distill_command, "stage 2: collect latent transitions to HDF5 and train the dynamics model"},
    {"assemble", crsm::cli::assemble_command, "stage 3: one checkpoint holding a backbone and its dynamics model"},
    {"check-dynamics", crsm::cli::check_dynamics_command, "stage 3: score a dynamics model against exact backbone steps"},
    {"generate", crsm::cli::generate_command, "sample text from a checkpoint in recurrent mode"},
    {"pipeline", crsm::cli::pipeline_command, "every stage in one command: 1, 4, 2, 3 and the planning evaluation"},
    {"rollouts", crsm::cli::rollouts_command, "sample answers to training tasks, labelled right or wrong, to HDF5 (outcome values)"},
    {"eval", crsm::cli::eval_command, "planning evaluation across ranks: greedy vs MCTS vs MCTS with injection on tasks"},
    {"export", crsm::cli::export_command, "write a checkpoint's model as safetensors, or (--format hf) for Hugging Face transformers"},
    {"plot", crsm::cli::plot_command, "draw train/val loss curves of runs to an SVG file"},
    {"memory", crsm::cli::memory_command, "tabulate per-rank training memory by world size and zero stage"},
};

std::string usage() {
  std::string text = "usage: crsm_train COMMAND [OPTIONS]   (crsm_train COMMAND --help for options)\n"
                     "       crsm_train --config FILE --output-dir DIR [OPTIONS]   (the pipeline)\n"
                     "       crsm_train --version   (the code's git describe and its libraries' versions)\n\ncommands:";
  char line[160];
  for (const auto& c : kCommands) {
    std::snprintf(line, sizeof line, "\n  %-15s %s", c.name, c.summary);
    text += line;
  }
  return text;
}

// The command being run, for the terminate handler's message.
std::string g_command_name;

// `crsm_train --config FILE --output-dir DIR`, with no command, is the pipeline (SPEC §10).
bool is_bare_pipeline(int argc, char** argv) {
  return argc >= 2 && std::strncmp(argv[1], "--", 2) == 0 && std::strcmp(argv[1], "--help") != 0 &&
         std::strcmp(argv[1], "--version") != 0;
}

const Command* find_command(int argc, char** argv) {
  for (const auto& c : kCommands)
    if (argc >= 2 && std::strcmp(argv[1], c.name) == 0) return &c;
  if (is_bare_pipeline(argc, argv))
    for (const auto& c : kCommands)
      if (std::strcmp(c.name, "pipeline") == 0) return &c;
  return nullptr;
}

[[noreturn]] void report(const std::string& command, const std::exception_ptr& escaped) {
  const auto e = crsm::cli::describe_escaped(command, escaped);
  fail_job(e.status, e.message);
}

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::prepare_blas_environment(argv);
  // Every command ends at its next safe point on SIGTERM or SIGUSR1 (status 4): the
  // handlers go in before any work, and the launcher kept the signals blocked until now.
  crsm::dist::install_preemption_handlers();
  const Command* command = find_command(argc, argv);
  crsm::dist::init_runtime(&argc, &argv);
  const bool bare = is_bare_pipeline(argc, argv);
  const std::string name = bare ? "pipeline" : argc >= 2 ? argv[1] : "";
  g_command_name = name;
  // An exception thrown where nothing can catch it (a destructor, another thread) ends
  // here too, as one line rather than the runtime's abort message.
  std::set_terminate([] {
    if (const auto escaped = std::current_exception()) report(g_command_name, escaped);
    fail_job(crsm::kExitInternalError, "crsm_train " + g_command_name +
                                             ": internal error (std::terminate without an exception). This is a bug "
                                             "in crsm_train: please report it with the command line.");
  });
  if (argc < 2) fail_job(crsm::kExitBadInput, usage());
  if (name == "--help" || name == "-h" || name == "help") {
    if (crsm::dist::runtime().is_root()) std::printf("%s\n", usage().c_str());
    return 0;
  }
  if (name == "--version") {
    if (crsm::dist::runtime().is_root()) std::fputs(crsm::cli::version_text().c_str(), stdout);
    return 0;
  }
  crsm::cli::remember_command_line(argc, argv);
  if (!command) fail_job(crsm::kExitBadInput, "crsm_train: unknown command '" + name + "'\n" + usage());
  try {
    // A signal that came while the program loaded: one process stops before any work (a
    // command of several ranks decides with the others at its first safe point).
    if (crsm::dist::runtime().world_size == 1)
      crsm::dist::stop_if_preempted(name, "before it began; nothing was done: rerun the command");
    // The command's own argv starts at its name; a bare pipeline's at the program's.
    const int status = bare ? command->run(argc, argv) : command->run(argc - 1, argv + 1);
    // A signal after the command's last safe point: its work is done, and it says so.
    if (status == crsm::kExitOk) crsm::dist::stop_if_preempted(name, "as it finished: its work is complete");
    return status;
  } catch (...) {
    report(name, std::current_exception());
  }
}
