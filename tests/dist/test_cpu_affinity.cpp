#include <gtest/gtest.h>

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

TEST(DistCpuAffinity, ThisProcessMayRunSomewhere) {
  const auto cpus = allowed_cpus();
  ASSERT_FALSE(cpus.empty());
  EXPECT_TRUE(std::is_sorted(cpus.begin(), cpus.end()));
}

}  // namespace
