#pragma once

// A config whose tensors cannot fit is refused before anything is allocated, with a
// message that names the keys that make it large, instead of LibTorch's allocator
// failing deep inside model construction.

#include <cstdint>
#include <string>

#include "config/run_config.h"
#include "model/dynamics_config.h"

namespace crsm {

enum class MemoryUse {
  kTraining,   // weights, gradients, AdamW state and the micro-batch's logits
  kInference,  // weights alone
};

// A lower bound, in bytes, on what one rank allocates for `use`: weights, gradients and
// AdamW state (sharded as zero_stage shards them over world_size ranks) and, in
// training, the logits of one micro-batch of micro_batch rows. Computed in floating
// point: it never overflows, however absurd the sizes.
double planned_bytes_per_rank(const RunConfig& config, MemoryUse use, int world_size, int64_t micro_batch);

// Physical memory of this machine, or the cgroup's limit when that is smaller.
double machine_memory_bytes();

// UsageError when ranks_on_node ranks of the planned size exceed machine_memory_bytes():
// "<source>: training needs at least 24.0 GiB per rank ..., more than this machine's
// 23.4 GiB; it is large because of d_state = 16777216 (default 16)".
void check_fits_in_memory(const RunConfig& config, MemoryUse use, int world_size, int ranks_on_node,
                          int64_t micro_batch, const std::string& source);

// UsageError "<source>: training the shared dynamics model (hidden 16777216) needs at
// least ... per rank (weights, gradients and AdamW state), more than this machine's ..."
// when ranks_on_node ranks of it exceed machine_memory_bytes().
void check_dynamics_fits_in_memory(const model::DynamicsConfig& cfg, int ranks_on_node, const std::string& source);

// "1.50 GiB", "16.0 TiB".
std::string format_bytes(double bytes);

}  // namespace crsm
