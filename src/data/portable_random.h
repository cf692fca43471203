#pragma once

// Random choices that are bit-identical on every platform: std::mt19937_64's output is
// fixed by the standard, but std::shuffle and the std:: distributions are not.

#include <cstdint>
#include <random>
#include <vector>

namespace crsm::data {

// A well-mixed seed for stream `stream` (e.g. an epoch) of a run seeded with `seed`;
// distinct streams of one seed always get distinct seeds.
uint64_t stream_seed(uint64_t seed, uint64_t stream);

// Uniform in [0, n), n > 0, by rejection (no modulo bias).
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n);

// Fisher–Yates.
void shuffle(std::vector<int64_t>& v, std::mt19937_64& rng);

}  // namespace crsm::data
