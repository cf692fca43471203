#include <gtest/gtest.h>

#include <sched.h>

#include <vector>

#include "dist/cpu_affinity.h"

namespace {

using crsm::dist::allowed_cpus;
using crsm::dist::ranks_sharing_cpus;

TEST(DistCpuAffinity, UnboundRanksShareTheWholeNode) {
  const std::vector<int> node = {0, 1, 2, 3, 4, 5, 6, 7};
  const std::vector<std::vector<int>> allowed(4, node);
  for (int me = 0; me < 4; ++me) EXPECT_EQ(ranks_sharing_cpus(allowed, me), 4);
}

// What Slurm's --cpus-per-task or mpirun --bind-to core produce: each rank's threads
// may use all of its own cores, not a quarter of them.
TEST(DistCpuAffinity, RanksBoundToTheirOwnCoresShareWithNobody) {
  const std::vector<std::vector<int>> allowed = {{0, 1}, {2, 3}, {4, 5}, {6, 7}};
  for (int me = 0; me < 4; ++me) EXPECT_EQ(ranks_sharing_cpus(allowed, me), 1);
}

TEST(DistCpuAffinity, RanksBoundPerSocketShareTheirSocket) {
  const std::vector<int> socket0 = {0, 1, 2, 3}, socket1 = {4, 5, 6, 7};
  const std::vector<std::vector<int>> allowed = {socket0, socket0, socket1, socket1, socket1};
  EXPECT_EQ(ranks_sharing_cpus(allowed, 0), 2);
  EXPECT_EQ(ranks_sharing_cpus(allowed, 4), 3);
}

TEST(DistCpuAffinity, PartialOverlapCountsAsSharing) {
  const std::vector<std::vector<int>> allowed = {{0, 1}, {1, 2}, {2, 3}};
  EXPECT_EQ(ranks_sharing_cpus(allowed, 0), 2);
  EXPECT_EQ(ranks_sharing_cpus(allowed, 1), 3);
}

// What taskset or a launcher's binding leaves the process is what it reports.
TEST(DistCpuAffinity, AllowedCpusFollowTheAffinityMask) {
  cpu_set_t original;
  ASSERT_EQ(sched_getaffinity(0, sizeof original, &original), 0);
  std::vector<int> before;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &original)) before.push_back(cpu);
  EXPECT_EQ(allowed_cpus(), before);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(before.back(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(allowed_cpus(), std::vector<int>{before.back()});
  ASSERT_EQ(sched_setaffinity(0, sizeof original, &original), 0);
}

}  // namespace
