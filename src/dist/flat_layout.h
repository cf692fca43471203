#pragma once

// Where every trainable parameter lives in one flat buffer, how that buffer is cut into
// gradient buckets, and which slice of each bucket a rank owns under ZeRO sharding.
//
// Parameters are laid out back to back in reverse registration order, the order
// backward produces their gradients, so buckets fill front to back while backward runs.
// Buckets are consecutive ranges of the buffer of bucket_elements each (rounded up to
// a multiple of the world size); a parameter may straddle two or more, so no bucket is
// larger than that, however large the embedding. Only the last bucket is padded, with
// zeros, to a multiple of the world size. Rank r owns chunk r of every bucket.
// Parameters may carry a unit (the group a ZeRO-3 run gathers at once): then buckets
// never straddle two units, and each unit's parameters must be contiguous.
// Ownership is described as segments: pieces of one parameter, which is also how
// optimizer state is saved, so a checkpoint written under one world size or zero stage
// can be re-partitioned for another.

#include <cstdint>
#include <string>
#include <vector>

namespace crsm::dist {

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  bool decay = true;  // weight decay applies
  int unit = 0;       // the gathering unit (all 0: no unit boundaries)
  int64_t numel() const;
};

struct FlatParam {
  ParamInfo info;
  int64_t offset = 0;                    // first element in the flat buffer
  int first_bucket = 0, last_bucket = 0;  // the buckets it overlaps
};

struct Bucket {
  int64_t begin = 0, end = 0;  // flat range, padding included
  int64_t data_end = 0;        // end of real elements; [data_end, end) is padding
  std::vector<int> params;     // indexes into FlatLayout::params() of those overlapping it
  int64_t chunk(int world) const { return (end - begin) / world; }
};

// The buckets one unit's parameters fill: [first_bucket, last_bucket]; empty (first >
// last) for a unit none of whose parameters are in the layout.
struct UnitBuckets {
  int first_bucket = 0, last_bucket = -1;
  bool empty() const { return first_bucket > last_bucket; }
};

// A contiguous piece of one parameter owned by a rank, within one bucket.
struct Segment {
  int param = 0;             // index into FlatLayout::params()
  int bucket = 0;            // index into FlatLayout::buckets()
  int64_t param_offset = 0;  // first element within the flattened parameter
  int64_t flat_offset = 0;   // first element in the flat buffer
  int64_t length = 0;
};

class FlatLayout {
 public:
  // `params` in registration order. bucket_elements > 0.
  FlatLayout(const std::vector<ParamInfo>& params, int world_size, int64_t bucket_elements);

  int world_size() const { return world_; }
  int64_t total() const { return total_; }  // flat elements, padding included
  int64_t data_elements() const;            // real parameter elements
  const std::vector<FlatParam>& params() const { return params_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  // Indexed by unit number, up to the largest unit of any parameter.
  const std::vector<UnitBuckets>& units() const { return units_; }
  // Flat elements of the unit, padding included.
  int64_t unit_elements(int unit) const;

  // The pieces of parameters rank `rank` owns: with sharded = false every parameter
  // whole (replicated optimizer state), else the rank's chunk of every bucket.
  std::vector<Segment> owned_segments(int rank, bool sharded) const;
  // Elements rank `rank` owns when sharded (its chunks, padding included).
  int64_t shard_elements() const;
  // Where bucket b's chunk starts in a rank's shard (its chunks of every bucket, in
  // bucket order), and where a segment the rank owns sits in it.
  int64_t shard_offset(int bucket) const { return shard_offsets_.at(static_cast<size_t>(bucket)); }
  int64_t shard_position(const Segment& segment, int rank) const;

 private:
  int world_;
  int64_t total_ = 0;
  std::vector<FlatParam> params_;
  std::vector<Bucket> buckets_;
  std::vector<UnitBuckets> units_;
  std::vector<int64_t> shard_offsets_;
};

}  // namespace crsm::dist
