#pragma once

// The crsm_train subcommands. Each gets argv from the subcommand name on and returns
// the process exit status; they throw on bad input, and main() reports it.
namespace crsm::cli {

int prepare_command(int argc, char** argv);
int train_command(int argc, char** argv);
int generate_command(int argc, char** argv);
int export_command(int argc, char** argv);
int plot_command(int argc, char** argv);
int memory_command(int argc, char** argv);
int distill_command(int argc, char** argv);
int assemble_command(int argc, char** argv);
int check_dynamics_command(int argc, char** argv);
int prepare_arc_command(int argc, char** argv);
int eval_command(int argc, char** argv);
int rollouts_command(int argc, char** argv);
int pipeline_command(int argc, char** argv);

}  // namespace crsm::cli
