#pragma once

// --resume for a job of several ranks. Rank 0 walks the candidates as resolve_resume
// does (and alone restores or reads `latest`), while every rank hashes its share of each
// candidate's files: a resume reads each checkpoint byte once in all, instead of rank 0
// reading the model and every rank's optimizer shard by itself.

#include <optional>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace crsm::checkpoint {

// Collective: every rank calls it and gets the same answer (nullopt: "auto" found
// nothing, a fresh start). Only rank 0's `spec` and `root` are used, and only rank 0
// fills `skipped`. Whatever rank 0's resolve_resume throws (a missing or damaged path),
// every rank throws as a CheckpointError with its message.
std::optional<std::string> resolve_resume_across_ranks(dist::Communicator& comm, const std::string& spec,
                                                       const std::string& root,
                                                       std::vector<std::string>* skipped);

}  // namespace crsm::checkpoint
