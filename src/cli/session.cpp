#include "cli/session.h"

#include <chrono>
#include <cstdio>

#include "dist/cpu_setup.h"

namespace crsm::cli {

std::vector<Option> with_session_flags(std::vector<Option> table) {
  table.insert(table.end(), {Option("threads", Constraint::integer(0, 4096),
                 "CPU threads per rank (0: this rank's CPUs / the ranks on its node sharing them)")
              .with_default("0"),
          Option("collective-timeout", Constraint::integer(0, dist::kMaxCollectiveTimeout.count()),
                 "seconds a rank waits for one MPI collective before the job is ended, naming it (0: forever; must "
                 "exceed the longest checkpoint save or corpus preparation)")
              .with_default(std::to_string(dist::kDefaultCollectiveTimeout.count()))});
  return table;
}

Session start_session(const std::string& device, const ParsedOptions& o, const std::string& command) {
  const auto& rt = dist::runtime();
  const torch::Device rank_device = dist::rank_device(device, rt);
  auto comm = dist::make_communicator(rt, rank_device, std::chrono::seconds(o.integer("collective-timeout")));
  const int threads = dist::configure_threads(static_cast<int>(o.integer("threads")), rt.ranks_sharing_cpus);
  if (rt.world_size > 1)
    std::fprintf(stderr, "%s%s: local rank %d of %d on this node, %d threads, device %s, %s backend\n",
                 dist::rank_prefix().c_str(), command.c_str(), rt.local_rank, rt.local_world_size, threads,
                 device.c_str(), comm->backend().c_str());
  return {rt, rank_device, std::move(comm)};
}

}  // namespace crsm::cli
