// The communicators' failure policy, without a GPU: when a communicator is aborted rather
// than destroyed, and how each kind of communication error leaves the program.
#include <gtest/gtest.h>

#include "dist/communicator.h"

namespace crsm::dist {
namespace {

TEST(CommPolicy, AbortsAfterAFailureOrWhileAnExceptionUnwinds) {
  EXPECT_EQ(choose_teardown(false, 0), Teardown::kDestroy);
  EXPECT_EQ(choose_teardown(true, 0), Teardown::kAbort);
  EXPECT_EQ(choose_teardown(false, 1), Teardown::kAbort);
}

}  // namespace
}  // namespace crsm::dist
