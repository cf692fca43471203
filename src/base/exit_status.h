#pragma once

namespace crsm {

// Process exit statuses of `crsm_train`, documented in the README and docs/launch.md;
// beside the errors (base/error.h) that most of them report.
enum ExitStatus : int {
  kExitOk = 0,
  kExitBadInput = 2,   // the message names the input; nothing was overwritten
  kExitNonFinite = 3,  // training stopped; checkpoints untouched
  kExitPreempted = 4,  // SIGTERM/SIGUSR1: a checkpoint was written; resume with --resume auto
  // A collective timed out (dist::CommTimeout): a peer stopped or hung. Not the input's
  // fault; the last checkpoint is intact.
  kExitCollectiveTimeout = 5,
  // The communication itself failed (dist::CommFailure: an MPI call, NCCL, CUDA): not the
  // input's fault either; the last checkpoint is intact.
  kExitCommFailure = 6,
  // Something escaped that is not one of our errors: a bug. One line names the command
  // and asks for a report; never a stack trace.
  kExitInternalError = 70,
};

}  // namespace crsm
