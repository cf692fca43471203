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
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    if (it->unit < 0) throw std::invalid_argument("parameter " + it->name + ": negative unit");
    params_.push_back({*it, 0, 0, 0});
  }
  // Each run of parameters of one unit starts a bucket and is cut into buckets of `size`;
  // only a run's last bucket is padded.
  for (size_t first = 0; first < params_.size();) {
    const int unit = params_[first].info.unit;
    if (static_cast<size_t>(unit) < units_.size() && !units_[static_cast<size_t>(unit)].empty())
      throw std::invalid_argument("unit " + std::to_string(unit) + " is not contiguous at parameter " +
                                  params_[first].info.name);
    const int64_t run_begin = total_;
    const int first_bucket = static_cast<int>(buckets_.size());
    size_t last = first;
    for (; last < params_.size() && params_[last].info.unit == unit; ++last) {
      auto& p = params_[last];
      const int64_t numel = p.info.numel();
      p.offset = total_;
      p.first_bucket = first_bucket + static_cast<int>((p.offset - run_begin) / size);
      p.last_bucket = first_bucket + static_cast<int>((p.offset + std::max<int64_t>(numel, 1) - 1 - run_begin) / size);
      total_ += numel;
    }
    for (int64_t begin = run_begin; begin < total_; begin += size) {
      Bucket b;
      b.begin = begin;
      b.data_end = std::min(begin + size, total_);
      b.end = begin + (b.data_end - begin + world_ - 1) / world_ * world_;
      buckets_.push_back(b);
    }
    if (!buckets_.empty()) total_ = buckets_.back().end;
    if (static_cast<size_t>(unit) >= units_.size()) units_.resize(static_cast<size_t>(unit) + 1);
    units_[static_cast<size_t>(unit)] = {first_bucket, static_cast<int>(buckets_.size()) - 1};
    first = last;
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    for (int b = p.first_bucket; b <= p.last_bucket && p.info.numel() > 0; ++b)
      buckets_[static_cast<size_t>(b)].params.push_back(static_cast<int>(i));
  }
  int64_t at = 0;
  for (const auto& b : buckets_) {
    shard_offsets_.push_back(at);
    at += b.chunk(world_);
  }
}

int64_t FlatLayout::shard_position(const Segment& seg, int rank) const {
  const auto& bucket = buckets_.at(static_cast<size_t>(seg.bucket));
  const int64_t chunk_begin = bucket.begin + rank * bucket.chunk(world_);
  return shard_offset(seg.bucket) + (seg.flat_offset - chunk_begin);
}

int64_t FlatLayout::unit_elements(int unit) const {
  const auto& u = units_.at(static_cast<size_t>(unit));
  if (u.empty()) return 0;
  return buckets_[static_cast<size_t>(u.last_bucket)].end - buckets_[static_cast<size_t>(u.first_bucket)].begin;
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
