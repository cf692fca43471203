#pragma once

// What a CUDA event query says about a collective (the NCCL backend's poll and wait):
// only cudaErrorNotReady means "not yet"; any other error is sticky (an illegal address,
// a lost device) and must be reported, not waited on.
#include <cuda_runtime.h>

namespace crsm::dist {

enum class EventState { kDone, kPending, kFailed };
EventState event_state(cudaError_t query);

}  // namespace crsm::dist
