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
  int64_t cursor = 0;
  Bucket open;
  auto close = [&] {
    if (open.params.empty()) return;
    open.data_end = cursor;
    const int64_t size = cursor - open.begin;
    const int64_t padded = (size + world_ - 1) / world_ * world_;
    cursor = open.begin + padded;
    open.end = cursor;
    buckets_.push_back(open);
    open = Bucket{};
    open.begin = cursor;
  };
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const int64_t n = it->numel();
    if (!open.params.empty() && cursor - open.begin + n > bucket_elements) close();
    FlatParam fp{*it, cursor, static_cast<int>(buckets_.size())};
    open.params.push_back(static_cast<int>(params_.size()));
    params_.push_back(std::move(fp));
    cursor += n;
  }
  close();
  total_ = cursor;
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
      if (begin < end) out.push_back({index, begin - p.offset, begin, end - begin});
    }
  }
  return out;
}

}  // namespace crsm::dist
