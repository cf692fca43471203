#pragma once

// The SHA-256 compression function over whole 64-byte blocks, in two versions: a plain
// one that is the reference (FIPS 180-4, line by line) and one using the x86 SHA
// extensions, about 5x faster. Checkpoints hash every byte they write and every byte a
// resume verifies, so this is on the path of each save. Internal to src/dist and its
// tests; everyone else uses Sha256.

#include <cstddef>
#include <cstdint>

namespace crsm::checkpoint::detail {

extern const uint32_t kSha256Round[64];

using Sha256Blocks = void (*)(uint32_t state[8], const uint8_t* blocks, size_t count);

void sha256_blocks_reference(uint32_t state[8], const uint8_t* blocks, size_t count);

// nullptr where the CPU (or the compiler) lacks the SHA extensions.
Sha256Blocks sha256_blocks_accelerated();

}  // namespace crsm::checkpoint::detail
