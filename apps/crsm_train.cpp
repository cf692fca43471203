// crsm_train: one binary for every stage, so `mpirun -np 8 crsm_train train ...` and a
// Slurm script launch the same program a user runs by hand.
#include <boost/program_options/errors.hpp>
#include <c10/util/Exception.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "train/exit_status.h"

namespace {

using crsm::dist::fail_job;
namespace status = crsm::train;

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
  // Checkpoints on SIGTERM/SIGUSR1: the handlers go in before any of its work, so a
  // signal during start-up is kept for the first safe point instead of killing it.
  bool preemptible;
};

const Command kCommands[] = {
    {"prepare", crsm::cli::prepare_command, "tokenize text files into token shards", false},
    {"train", crsm::cli::train_command, "train the backbone (stage 1) or fine-tune with value heads (stage 4)", true},
    {"generate", crsm::cli::generate_command, "sample text from a checkpoint in recurrent mode", false},
    {"export", crsm::cli::export_command, "write a checkpoint's model as safetensors", false},
    {"plot", crsm::cli::plot_command, "draw train/val loss curves of runs to an SVG file", false},
    {"memory", crsm::cli::memory_command, "tabulate per-rank training memory by world size and zero stage", false},
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

// The command being run, for the terminate handler's message.
std::string g_command_name;

const Command* find_command(int argc, char** argv) {
  for (const auto& c : kCommands)
    if (argc >= 2 && std::strcmp(argv[1], c.name) == 0) return &c;
  return nullptr;
}

std::string first_line(std::string text) {
  text = text.substr(0, text.find('\n'));
  return text.size() > 300 ? text.substr(0, 300) + "..." : text;
}

[[noreturn]] void internal_error(const std::string& command, const std::string& what) {
  fail_job(status::kExitInternalError,
           "crsm_train " + command + ": internal error (" + first_line(what) +
               "). This is a bug in crsm_train: please report it with the command line and this message.");
}

bool out_of_memory(const c10::Error& e) {
  const std::string m = e.msg();
  return dynamic_cast<const c10::OutOfMemoryError*>(&e) || m.find("not enough memory") != std::string::npos ||
         m.find("can't allocate memory") != std::string::npos;
}

// What escapes a command: our errors are reported as they are; anything else is a bug.
[[noreturn]] void report(const std::string& name, const std::exception_ptr& escaped) {
  const std::string prefix = "crsm_train " + name + ": ";
  try {
    std::rethrow_exception(escaped);
  } catch (const boost::program_options::error& e) {
    fail_job(status::kExitBadInput, prefix + e.what() + " (see crsm_train " + name + " --help)");
  } catch (const crsm::dist::CommTimeout& e) {
    fail_job(status::kExitCollectiveTimeout, prefix + "error: " + e.what());
  } catch (const crsm::Error& e) {
    fail_job(status::kExitBadInput, prefix + "error: " + e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    // Names the path and the system's reason: a permission or a full disk, not a bug.
    fail_job(status::kExitBadInput, prefix + "error: " + e.what());
  } catch (const std::bad_alloc&) {
    fail_job(status::kExitBadInput, prefix + "error: out of memory (reduce the model, batch_size or seq_len)");
  } catch (const c10::Error& e) {
    if (out_of_memory(e))
      fail_job(status::kExitBadInput, prefix + "error: out of memory: " + first_line(e.msg()) +
                                          " (reduce the model, batch_size or seq_len)");
    internal_error(name, "c10::Error: " + e.msg());
  } catch (const std::exception& e) {
    internal_error(name, e.what());
  } catch (...) {
    internal_error(name, "an exception of unknown type");
  }
}

}  // namespace

int main(int argc, char** argv) {
  crsm::dist::prepare_blas_environment(argv);
  const Command* command = find_command(argc, argv);
  if (command && command->preemptible) crsm::dist::install_preemption_handlers();
  crsm::dist::init_runtime(&argc, &argv);
  const std::string name = argc >= 2 ? argv[1] : "";
  g_command_name = name;
  // An exception thrown where nothing can catch it (a destructor, another thread) ends
  // here too, as one line rather than the runtime's abort message.
  std::set_terminate([] {
    if (const auto escaped = std::current_exception()) report(g_command_name, escaped);
    internal_error(g_command_name, "std::terminate without an exception");
  });
  if (argc < 2) fail_job(status::kExitBadInput, usage());
  if (name == "--help" || name == "-h" || name == "help") {
    if (crsm::dist::runtime().is_root()) std::printf("%s\n", usage().c_str());
    return 0;
  }
  if (!command) fail_job(status::kExitBadInput, "crsm_train: unknown command '" + name + "'\n" + usage());
  try {
    return command->run(argc - 1, argv + 1);
  } catch (...) {
    report(name, std::current_exception());
  }
}
