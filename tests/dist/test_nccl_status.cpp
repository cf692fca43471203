// Built where the NCCL backend is (CUDA toolkit present, GPU or not): how a CUDA event
// query is read. Only cudaErrorNotReady is "not yet"; a sticky error must surface.
#include <gtest/gtest.h>

#include "dist/nccl_status.h"

namespace crsm::dist {
namespace {

TEST(NcclStatus, OnlyNotReadyMeansPending) {
  EXPECT_EQ(event_state(cudaSuccess), EventState::kDone);
  EXPECT_EQ(event_state(cudaErrorNotReady), EventState::kPending);
  for (const cudaError_t sticky : {cudaErrorIllegalAddress, cudaErrorLaunchFailure, cudaErrorInvalidResourceHandle,
                                   cudaErrorNoDevice})
    EXPECT_EQ(event_state(sticky), EventState::kFailed) << cudaGetErrorName(sticky);
}

}  // namespace
}  // namespace crsm::dist
