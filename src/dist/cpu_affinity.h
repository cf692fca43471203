#pragma once

// Which CPUs a rank may run on, and with how many other ranks it shares them: the
// basis of the default threads per rank (SPEC §6: cores on the node / ranks on the
// node, where "cores" are those the launcher left us).

#include <vector>

namespace crsm::dist {

// The CPUs this process may run on (taskset, cgroups, a launcher's binding), ascending.
std::vector<int> allowed_cpus();

// How many of a node's ranks may run on at least one CPU that rank `me` may run on,
// itself included; `allowed[i]` holds local rank i's CPUs. Ranks bound to cores of
// their own (Slurm --cpus-per-task, mpirun --bind-to core) share with nobody; unbound
// ranks all share the node's CPUs.
int ranks_sharing_cpus(const std::vector<std::vector<int>>& allowed, int me);

}  // namespace crsm::dist
