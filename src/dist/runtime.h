#pragma once

// Parallel state of this process, in one place (Megatron-LM's habit): who we are among
// the ranks, which of them share our node, and whether a preemption signal arrived.
//
// A process started by mpirun or `srun --mpi=pmix` joins the MPI world; one started
// by hand is world size 1 and never touches MPI, so the CLI and the tests run without
// a launcher.

#include <cstdint>
#include <string>
#include <utility>

namespace crsm::dist {

struct Runtime {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // among the ranks on this node (shared-memory split)
  int local_world_size = 1;  // ranks on this node
  // Ranks on this node allowed on any of this rank's CPUs, itself included: all of them
  // when unbound, 1 when a launcher gave each rank cores of its own.
  int ranks_sharing_cpus = 1;
  bool mpi = false;          // MPI initialised (launched by mpirun or srun)

  bool is_root() const { return rank == 0; }
};

// Initialises MPI when a launcher started this process (Open MPI, PMIx or PMI variables
// in the environment), and is a no-op otherwise. Idempotent; MPI is finalised at exit.
const Runtime& init_runtime(int* argc, char*** argv);

// The state set by init_runtime (world size 1 before it is called).
const Runtime& runtime();

// Reports the error that ended this rank's work (`message`, one or more lines) and ends
// the process with `status`. In a job of several ranks it first waits a few seconds for
// the others: when every rank fails with the same message (a bad flag, an impossible
// config, a damaged --resume path), rank 0 prints it once and all exit together; when
// the messages differ each rank prints its own, prefixed. When some rank does not fail,
// this one prints its message, prefixed, and aborts the job (MPI_Abort) so nobody waits
// forever in a collective. Ranks failing about 3 s apart land on either side of that
// wait: the job then ends by the abort, though every rank failed.
[[noreturn]] void fail_job(int status, const std::string& message);

// The MPI library's own description of itself (its first line), and this host's name.
std::string mpi_library_version();
std::string host_name();

// A collective that timed out is abandoned with its MPI request still active. From then
// on other waits give up at once instead of each waiting out its own timeout, and the
// process may only end by MPI_Abort: MPI_Finalize must not meet an active request.
void abandon_collectives();
bool collectives_abandoned();

// Rank `rank`'s contiguous share of n items, [n * rank / world, n * (rank + 1) / world):
// the shares of all ranks cover the items once, in order, and differ by one at most.
std::pair<int64_t, int64_t> rank_share(int64_t n, int rank, int world);

// "[rank 3] " in a multi-rank job, "" otherwise: the prefix of every rank's messages.
std::string rank_prefix();

// SIGTERM and SIGUSR1 (what Slurm and schedulers send before preempting a job) set a
// flag instead of killing the process; every command polls it at its safe points.
// crsm_train's launcher blocks both signals before the program starts, and main() calls
// this first: it installs the handlers and then unblocks the signals, so one that arrived
// while LibTorch loaded is delivered now and kept for the first safe point.
void install_preemption_handlers();
bool preemption_signalled();
// The signal that set the flag (0 when none), for messages.
int preemption_signal();
// "SIGTERM", "SIGUSR1", or "signal N".
std::string signal_name(int sig);

// A safe point of a command: when a preemption signal has arrived, throws Preempted with
// "<command>: preempted by SIGUSR1 <state>", state saying what was kept and what to do
// ("before writing anything: rerun the command"). Each rank decides alone: a command of
// several ranks agrees first: Communicator's stop_if_preempted_on_any_rank.
void stop_if_preempted(const std::string& command, const std::string& state);

}  // namespace crsm::dist
