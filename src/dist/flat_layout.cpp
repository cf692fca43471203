#include "dist/flat_layout.h"

#include <algorithm>
#include <stdexcept>

namespace crsm::dist {

int64_t ParamInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

FlatLayout::FlatLayout(const std::vector<ParamInfo>& params, int world_size, int64_t bucket_elements)
    : world_(world_size) {
  if (world_size < 1) throw std::invalid_argument("world size must be >= 1");
  if (bucket_elements < 1) throw std::invalid_argument("bucket size must be > 0 elements");
  const int64_t size = (bucket_elements + world_ - 1) / world_ * world_;
  int64_t data = 0;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    params_.push_back({*it, data, 0, 0});
    data += it->numel();
  }
  for (int64_t begin = 0; begin < data; begin += size) {
    Bucket b;
    b.begin = begin;
    b.data_end = std::min(begin + size, data);
    b.end = begin + (b.data_end - begin + world_ - 1) / world_ * world_;
    buckets_.push_back(b);
  }
  total_ = buckets_.empty() ? 0 : buckets_.back().end;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const int64_t numel = p.info.numel();
    p.first_bucket = static_cast<int>(p.offset / size);
    p.last_bucket = static_cast<int>((p.offset + std::max<int64_t>(numel, 1) - 1) / size);
    for (int b = p.first_bucket; b <= p.last_bucket && numel > 0; ++b)
      buckets_[static_cast<size_t>(b)].params.push_back(static_cast<int>(i));
  }
}

int64_t FlatLayout::data_elements() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.info.numel();
  return n;
}

int64_t FlatLayout::shard_elements() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b.chunk(world_);
  return n;
}

std::vector<Segment> FlatLayout::owned_segments(int rank, bool sharded) const {
  std::vector<Segment> out;
  for (const auto& bucket : buckets_) {
    int64_t lo = bucket.begin, hi = bucket.data_end;
    if (sharded) {
      lo = bucket.begin + rank * bucket.chunk(world_);
      hi = std::min(lo + bucket.chunk(world_), bucket.data_end);
    }
    for (int index : bucket.params) {
      const auto& p = params_[static_cast<size_t>(index)];
      const int64_t begin = std::max(lo, p.offset);
      const int64_t end = std::min(hi, p.offset + p.info.numel());
      if (begin < end)
        out.push_back({index, static_cast<int>(&bucket - buckets_.data()), begin - p.offset, begin, end - begin});
    }
  }
  return out;
}

}  // namespace crsm::dist
