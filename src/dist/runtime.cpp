#include "dist/runtime.h"

#include <mpi.h>

#include <chrono>
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/exit_status.h"
#include "dist/cpu_affinity.h"

namespace crsm::dist {
namespace {

Runtime g_runtime;
// fail_job's own communicator, so its barrier cannot match a collective that other
// ranks are still inside on MPI_COMM_WORLD.
MPI_Comm g_failure_comm = MPI_COMM_NULL;
volatile std::sig_atomic_t g_signal = 0;
bool g_collectives_abandoned = false;

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var)) return true;
  return false;
}

// torchrun (and launchers like it) start W copies that find each other through WORLD_SIZE,
// RANK and a rendezvous; ours find each other through MPI. Started that way, each copy
// would run alone as world size 1, beside the others, on the same run directory.
void refuse_launch_without_mpi() {
  const char* world = std::getenv("WORLD_SIZE");
  if (!world || std::atoll(world) <= 1) return;
  const char* rank = std::getenv("RANK");
  fail_job(kExitBadInput,
           std::string("crsm_train: started as one of WORLD_SIZE=") + world + " processes (RANK=" + (rank ? rank : "?") +
               ": torchrun or a launcher like it) but not by an MPI launcher; crsm_train's ranks find each other "
               "through MPI, so each copy would run alone as world size 1 on the same run directory. Launch it with "
               "mpirun -np " + world + " crsm_train ..., or srun --mpi=pmix crsm_train ... under Slurm");
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void on_preemption_signal(int sig) { g_signal = sig; }

// Ends every rank of the job with `status`, as mpirun reports it.
[[noreturn]] void abort_job(int status) {
  if (g_runtime.mpi && g_runtime.world_size > 1) MPI_Abort(MPI_COMM_WORLD, status);
  std::exit(status);
}

// Every rank on the node tells the others its CPUs (as a 0/1 map over the CPU ids).
int count_ranks_sharing_cpus(MPI_Comm node, int local_rank, int local_size) {
  const std::vector<int> mine = allowed_cpus();
  int width = mine.back() + 1;
  MPI_Allreduce(MPI_IN_PLACE, &width, 1, MPI_INT, MPI_MAX, node);
  std::vector<char> map(static_cast<size_t>(width), 0), maps(static_cast<size_t>(width) * local_size);
  for (int cpu : mine) map[static_cast<size_t>(cpu)] = 1;
  MPI_Allgather(map.data(), width, MPI_CHAR, maps.data(), width, MPI_CHAR, node);
  std::vector<std::vector<int>> allowed(static_cast<size_t>(local_size));
  for (int r = 0; r < local_size; ++r)
    for (int cpu = 0; cpu < width; ++cpu)
      if (maps[static_cast<size_t>(r) * width + cpu]) allowed[static_cast<size_t>(r)].push_back(cpu);
  return ranks_sharing_cpus(allowed, local_rank);
}

}  // namespace

const Runtime& init_runtime(int* argc, char*** argv) {
  if (g_runtime.mpi) return g_runtime;
  if (!launched_by_mpi()) {
    refuse_launch_without_mpi();
    return g_runtime;
  }
  // Open MPI's nonblocking all-reduce (which the gradient buckets use) picks a
  // reduce-then-broadcast algorithm for fewer than 4 ranks or in-place buffers, at
  // half the bandwidth of MPI_Allreduce; its ring algorithm matches MPI_Allreduce
  // (bench/bench_dist.cpp). A value the user set wins.
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
  int provided = 0;
  // Backward hooks and the training loop run on the main thread; nothing else calls MPI.
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  std::atexit(finalize_at_exit);
  g_runtime.mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_runtime.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_runtime.world_size);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_runtime.rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &g_runtime.local_rank);
  MPI_Comm_size(node, &g_runtime.local_world_size);
  g_runtime.ranks_sharing_cpus = count_ranks_sharing_cpus(node, g_runtime.local_rank, g_runtime.local_world_size);
  MPI_Comm_free(&node);
  MPI_Comm_dup(MPI_COMM_WORLD, &g_failure_comm);
  // A dead peer must not end the job inside fail_job before the message is printed.
  MPI_Comm_set_errhandler(g_failure_comm, MPI_ERRORS_RETURN);
  return g_runtime;
}

const Runtime& runtime() { return g_runtime; }

[[noreturn]] void fail_job(int status, const std::string& message) {
  const auto print = [&](const std::string& prefix) {
    std::fprintf(stderr, "%s%s\n", prefix.c_str(), message.c_str());
    std::fflush(stderr);
  };
  std::fflush(stdout);
  if (!g_runtime.mpi || g_runtime.world_size == 1) {
    print("");
    std::exit(status);
  }
  // Long enough for ranks that fail on the same input at slightly different moments
  // (one still reading a file the others have read); short next to any job.
  constexpr auto kWaitForOthers = std::chrono::seconds(3);
  MPI_Request everyone = MPI_REQUEST_NULL;
  int all_failed = 0;
  bool broken = MPI_Ibarrier(g_failure_comm, &everyone) != MPI_SUCCESS;
  for (const auto deadline = std::chrono::steady_clock::now() + kWaitForOthers;
       !broken && !all_failed && std::chrono::steady_clock::now() < deadline;) {
    broken = MPI_Test(&everyone, &all_failed, MPI_STATUS_IGNORE) != MPI_SUCCESS;
    if (!all_failed) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (broken) all_failed = 0;
  if (!all_failed) {
    print(rank_prefix());
    abort_job(status);
  }
  // The maxima of h and ~h are this rank's h and ~h, the largest and the smallest hash,
  // on every rank exactly when all ranks have the same message.
  const unsigned long long h = std::hash<std::string>{}(message);
  unsigned long long both[2] = {h, ~h};
  const bool compared =
      MPI_Allreduce(MPI_IN_PLACE, both, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, g_failure_comm) == MPI_SUCCESS;
  const bool same = compared && both[0] == h && both[1] == ~h;
  if (!same)
    print(rank_prefix());
  else if (g_runtime.is_root())
    print("");
  if (g_collectives_abandoned) abort_job(status);
  std::exit(status);
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  const std::string all(text, static_cast<size_t>(length));
  return all.substr(0, all.find_first_of("\n,"));
}

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

void abandon_collectives() { g_collectives_abandoned = true; }
bool collectives_abandoned() { return g_collectives_abandoned; }

std::pair<int64_t, int64_t> rank_share(int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
}

std::string rank_prefix() {
  if (g_runtime.world_size <= 1) return "";
  return "[rank " + std::to_string(g_runtime.rank) + "] ";
}

void install_preemption_handlers() {
  struct sigaction action = {};
  action.sa_handler = on_preemption_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
  sigset_t preemption;
  sigemptyset(&preemption);
  sigaddset(&preemption, SIGTERM);
  sigaddset(&preemption, SIGUSR1);
  sigprocmask(SIG_UNBLOCK, &preemption, nullptr);
}

bool preemption_signalled() { return g_signal != 0; }

std::string signal_name(int sig) {
  if (sig == SIGTERM) return "SIGTERM";
  if (sig == SIGUSR1) return "SIGUSR1";
  return "signal " + std::to_string(sig);
}
int preemption_signal() { return static_cast<int>(g_signal); }

void stop_if_preempted(const std::string& command, const std::string& state) {
  if (preemption_signalled())
    throw Preempted(command + ": preempted by " + signal_name(preemption_signal()) + " " + state);
}

}  // namespace crsm::dist
