#include "checkpoint/resume_across_ranks.h"

#include "checkpoint/store.h"

namespace crsm::checkpoint {
namespace {

// What rank 0 broadcasts, one message at a time, first character the kind.
constexpr char kVerify = '?';  // hash your share of this directory
constexpr char kChosen = '=';  // the answer (empty: none); the exchange is over
constexpr char kFailed = '!';  // rank 0 gave up with this message

// Every rank's share of `dir` checked; the lowest failing rank's problem, or "".
std::string verify_together(dist::Communicator& comm, const std::string& dir) {
  const int world = comm.world_size();
  const std::string mine = verify_checkpoint(dir, comm.rank(), world);
  // max of (world - rank) over failing ranks picks the lowest one.
  const int first = world - static_cast<int>(dist::all_reduce_scalar(
                                comm, mine.empty() ? 0 : world - comm.rank(), dist::ReduceOp::kMax));
  return first == world ? "" : dist::broadcast_string(comm, mine, first);
}

}  // namespace

std::optional<std::string> resolve_resume_across_ranks(dist::Communicator& comm, const std::string& spec,
                                                       const std::string& root,
                                                       std::vector<std::string>* skipped) {
  if (comm.world_size() == 1) return resolve_resume(spec, root, skipped);
  std::string answer;
  if (comm.rank() == 0) {
    try {
      const auto chosen = resolve_resume(spec, root, skipped, "--resume", [&](const std::string& dir) {
        dist::broadcast_string(comm, kVerify + dir);
        return verify_together(comm, dir);
      });
      answer = kChosen + chosen.value_or("");
    } catch (const std::exception& e) {  // the others wait for a message, not an abort
      answer = kFailed + std::string(e.what());
    }
    dist::broadcast_string(comm, answer);
  } else {
    for (answer = dist::broadcast_string(comm, ""); answer.at(0) == kVerify; answer = dist::broadcast_string(comm, ""))
      verify_together(comm, answer.substr(1));
  }
  if (answer.at(0) == kFailed) throw CheckpointError(answer.substr(1));
  if (answer.size() == 1) return std::nullopt;
  return answer.substr(1);
}

}  // namespace crsm::checkpoint
