#include "dist/runtime.h"

#include <mpi.h>

#include <csignal>
#include <cstdlib>

namespace crsm::dist {
namespace {

Runtime g_runtime;
volatile std::sig_atomic_t g_signal = 0;

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var)) return true;
  return false;
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void on_preemption_signal(int sig) { g_signal = sig; }

}  // namespace

const Runtime& init_runtime(int* argc, char*** argv) {
  if (g_runtime.mpi || !launched_by_mpi()) return g_runtime;
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
  MPI_Comm_free(&node);
  return g_runtime;
}

const Runtime& runtime() { return g_runtime; }

void abort_job(int status) {
  if (g_runtime.mpi && g_runtime.world_size > 1) MPI_Abort(MPI_COMM_WORLD, status);
  std::exit(status);
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
}

bool preemption_signalled() { return g_signal != 0; }
int preemption_signal() { return static_cast<int>(g_signal); }

}  // namespace crsm::dist
