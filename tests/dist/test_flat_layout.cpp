#include <gtest/gtest.h>

#include <map>

#include "dist/data_parallel.h"
#include "dist/flat_layout.h"
#include "dist/zero_policy.h"

namespace {

using crsm::dist::FlatLayout;
using crsm::dist::ParamInfo;

std::vector<ParamInfo> params() {
  return {{"a", {5, 3}, true}, {"b", {7}, false}, {"c", {2, 2}, true}, {"d", {11}, false}};
}

TEST(FlatLayout, BucketsAreFixedRangesOfTheReversedParametersPaddedOnlyAtTheEnd) {
  const FlatLayout layout(params(), 3, /*bucket_elements=*/16);  // rounded up to 18
  ASSERT_EQ(layout.params().size(), 4u);
  EXPECT_EQ(layout.params()[0].info.name, "d");  // backward produces it first
  EXPECT_EQ(layout.params()[3].info.name, "a");
  EXPECT_EQ(layout.data_elements(), 11 + 4 + 7 + 15);
  // Parameters sit back to back: d [0,11) c [11,15) b [15,22) a [22,37).
  EXPECT_EQ(layout.params()[3].offset, 22);
  ASSERT_EQ(layout.buckets().size(), 3u);
  EXPECT_EQ(layout.buckets()[0].end, 18);
  EXPECT_EQ(layout.buckets()[1].begin, 18);
  EXPECT_EQ(layout.buckets()[2].data_end, 37);
  EXPECT_EQ(layout.buckets()[2].end, 39);  // the last bucket alone is padded
  EXPECT_EQ(layout.total(), 39);
  // b straddles buckets 0 and 1, a straddles 1 and 2.
  EXPECT_EQ(layout.params()[2].first_bucket, 0);
  EXPECT_EQ(layout.params()[2].last_bucket, 1);
  EXPECT_EQ(layout.params()[3].first_bucket, 1);
  EXPECT_EQ(layout.params()[3].last_bucket, 2);
  EXPECT_EQ(layout.buckets()[1].params, (std::vector<int>{2, 3}));
}

// Units (what ZeRO-3 gathers at once) never share a bucket: each starts a bucket and
// only its last bucket is padded, so a rank's chunks of a unit are its shard of it.
TEST(FlatLayout, UnitsStartTheirOwnBuckets) {
  std::vector<ParamInfo> with_units = params();
  const int units[] = {0, 0, 1, 2};  // a, b | c | d
  for (size_t i = 0; i < with_units.size(); ++i) with_units[i].unit = units[i];
  const FlatLayout layout(with_units, 3, /*bucket_elements=*/16);  // rounded up to 18
  // Reversed: d [0,11) pad to 12 | c [12,16) pad to 18 | b [18,25) a [25,40) in buckets of 18.
  ASSERT_EQ(layout.buckets().size(), 4u);
  EXPECT_EQ(layout.buckets()[0].end, 12);
  EXPECT_EQ(layout.buckets()[1].begin, 12);
  EXPECT_EQ(layout.buckets()[1].end, 18);
  EXPECT_EQ(layout.params()[2].offset, 18);
  EXPECT_EQ(layout.buckets()[2].end, 36);
  EXPECT_EQ(layout.buckets()[3].data_end, 40);
  EXPECT_EQ(layout.total(), 42);
  ASSERT_EQ(layout.units().size(), 3u);
  EXPECT_EQ(layout.units()[0].first_bucket, 2);
  EXPECT_EQ(layout.units()[0].last_bucket, 3);
  EXPECT_EQ(layout.units()[2].first_bucket, 0);
  EXPECT_EQ(layout.units()[2].last_bucket, 0);
  EXPECT_EQ(layout.unit_elements(0), 24);
  EXPECT_EQ(layout.unit_elements(1), 6);
  // Every parameter is still covered once by the ranks' chunks.
  int64_t covered = 0;
  for (int r = 0; r < 3; ++r)
    for (const auto& seg : layout.owned_segments(r, true)) covered += seg.length;
  EXPECT_EQ(covered, layout.data_elements());
}

TEST(FlatLayout, AUnitSplitByAnotherIsRefused) {
  std::vector<ParamInfo> split = params();
  const int units[] = {0, 1, 0, 2};
  for (size_t i = 0; i < split.size(); ++i) split[i].unit = units[i];
  EXPECT_THROW(FlatLayout(split, 2, 16), std::invalid_argument);
}

TEST(FlatLayout, NoBucketIsLargerThanAsked) {
  const FlatLayout layout({{"huge", {1000, 100}, true}, {"small", {10}, false}}, 8, 4096);
  for (const auto& b : layout.buckets()) EXPECT_LE(b.end - b.begin, 4096);
  EXPECT_EQ(layout.buckets().size(), (100010 + 4095) / 4096);
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
        const auto& bucket = layout.buckets()[static_cast<size_t>(s.bucket)];
        EXPECT_GE(s.flat_offset, bucket.begin);
        EXPECT_LE(s.flat_offset + s.length, bucket.data_end);
        for (int64_t i = 0; i < s.length; ++i) ++hits[name][static_cast<size_t>(s.param_offset + i)];
      }
    for (const auto& [name, counts] : hits)
      for (int c : counts) EXPECT_EQ(c, 1) << name << " world " << world;
  }
}

TEST(FlatLayout, ReplicatedSegmentsCoverWholeParametersBucketByBucket) {
  const FlatLayout layout(params(), 4, 8);
  std::map<int, int64_t> covered;
  for (const auto& s : layout.owned_segments(2, /*sharded=*/false)) covered[s.param] += s.length;
  ASSERT_EQ(covered.size(), 4u);
  for (const auto& [param, n] : covered) EXPECT_EQ(n, layout.params()[static_cast<size_t>(param)].info.numel());
}

// The README's memory table: sharding divides optimizer state (stage 1) and gradients
// (stage 2) by the world size, up to padding and the buckets in flight.
TEST(MemoryPlan, StagesShrinkWhatTheDesignSays) {
  std::vector<ParamInfo> many;
  for (int i = 0; i < 64; ++i) many.push_back({"p" + std::to_string(i), {1000, 100}, true});
  const FlatLayout one(many, 1, 1 << 20), eight(many, 8, 1 << 20);
  const auto s0 = crsm::dist::planned_memory(eight, crsm::dist::ZeroPolicy::for_stage(0), 4);
  const auto s1 = crsm::dist::planned_memory(eight, crsm::dist::ZeroPolicy::for_stage(1), 4);
  const auto s2 = crsm::dist::planned_memory(eight, crsm::dist::ZeroPolicy::for_stage(2), 4);
  const int64_t n = 64 * 100000;
  EXPECT_EQ(s0.optimizer, 8 * n);
  EXPECT_EQ(crsm::dist::planned_memory(one, crsm::dist::ZeroPolicy::for_stage(1), 4).optimizer, 8 * n);
  EXPECT_EQ(s1.optimizer, 8 * eight.shard_elements());
  EXPECT_LE(eight.shard_elements() * 8 - n, 8);  // only the last bucket's padding
  EXPECT_EQ(s1.grads, s0.grads);
  // Buckets of 2^20 elements: two in flight with their received chunks, one being filled.
  const int64_t bucket = 1 << 20;
  EXPECT_EQ(s2.grads, 4 * (eight.shard_elements() + 3 * bucket + 2 * bucket / 8));
  EXPECT_LT(s2.grads, s1.grads);
  EXPECT_EQ(s2.params, s0.params);
}

}  // namespace
