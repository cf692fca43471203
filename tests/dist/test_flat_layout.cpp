#include <gtest/gtest.h>

#include <map>

#include "dist/data_parallel.h"
#include "dist/flat_layout.h"

namespace {

using crsm::dist::FlatLayout;
using crsm::dist::ParamInfo;

std::vector<ParamInfo> params() {
  return {{"a", {5, 3}, true}, {"b", {7}, false}, {"c", {2, 2}, true}, {"d", {11}, false}};
}

TEST(FlatLayout, BucketsFollowReverseRegistrationOrderAndArePaddedToTheWorld) {
  const FlatLayout layout(params(), 3, /*bucket_elements=*/16);
  ASSERT_EQ(layout.params().size(), 4u);
  EXPECT_EQ(layout.params()[0].info.name, "d");  // backward produces it first
  EXPECT_EQ(layout.params()[3].info.name, "a");
  for (const auto& b : layout.buckets()) {
    EXPECT_EQ((b.end - b.begin) % 3, 0);
    EXPECT_LE(b.data_end, b.end);
  }
  EXPECT_EQ(layout.data_elements(), 15 + 7 + 4 + 11);
  // d (11) + c (4) fit 16; b (7) opens a new bucket; a (15) does not fit with b.
  ASSERT_EQ(layout.buckets().size(), 3u);
  EXPECT_EQ(layout.buckets()[0].params.size(), 2u);
}

TEST(FlatLayout, ShardedSegmentsCoverEveryElementExactlyOnce) {
  for (int world : {1, 2, 3, 5}) {
    const FlatLayout layout(params(), world, 8);
    std::map<std::string, std::vector<int>> hits;
    for (const auto& fp : layout.params()) hits[fp.info.name].assign(static_cast<size_t>(fp.info.numel()), 0);
    for (int r = 0; r < world; ++r)
      for (const auto& s : layout.owned_segments(r, /*sharded=*/true)) {
        const auto& name = layout.params()[static_cast<size_t>(s.param)].info.name;
        EXPECT_EQ(s.flat_offset, layout.params()[static_cast<size_t>(s.param)].offset + s.param_offset);
        for (int64_t i = 0; i < s.length; ++i) ++hits[name][static_cast<size_t>(s.param_offset + i)];
      }
    for (const auto& [name, counts] : hits)
      for (int c : counts) EXPECT_EQ(c, 1) << name << " world " << world;
  }
}

TEST(FlatLayout, ReplicatedSegmentsAreWholeParameters) {
  const FlatLayout layout(params(), 4, 8);
  const auto segs = layout.owned_segments(2, /*sharded=*/false);
  ASSERT_EQ(segs.size(), 4u);
  for (const auto& s : segs) {
    EXPECT_EQ(s.param_offset, 0);
    EXPECT_EQ(s.length, layout.params()[static_cast<size_t>(s.param)].info.numel());
  }
}

// The README's memory table: sharding divides optimizer state (stage 1) and gradients
// (stage 2) by the world size, up to padding and the buckets in flight.
TEST(MemoryPlan, StagesShrinkWhatTheDesignSays) {
  std::vector<ParamInfo> many;
  for (int i = 0; i < 64; ++i) many.push_back({"p" + std::to_string(i), {1000, 100}, true});
  const FlatLayout one(many, 1, 1 << 20), eight(many, 8, 1 << 20);
  const auto s0 = crsm::dist::planned_memory(eight, 0, 4);
  const auto s1 = crsm::dist::planned_memory(eight, 1, 4);
  const auto s2 = crsm::dist::planned_memory(eight, 2, 4);
  const int64_t n = 64 * 100000;
  EXPECT_EQ(s0.optimizer, 8 * n);
  EXPECT_EQ(crsm::dist::planned_memory(one, 1, 4).optimizer, 8 * n);
  EXPECT_EQ(s1.optimizer, 8 * n / 8);
  EXPECT_EQ(s1.grads, s0.grads);
  // Buckets hold ten whole 100,000-element parameters (an eleventh would pass 2^20):
  // two in flight with their received chunks, and one being filled.
  EXPECT_EQ(s2.grads, 4 * (n / 8 + 3 * 1000000 + 2 * 1000000 / 8));
  EXPECT_EQ(s2.params, s0.params);
}

}  // namespace
