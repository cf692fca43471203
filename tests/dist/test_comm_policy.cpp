// The communicators' failure policy, without a GPU: when a communicator is aborted rather
// than destroyed, and how each kind of communication error leaves the program.
#include <gtest/gtest.h>

#include <stdexcept>

#include "dist/communicator.h"

namespace crsm::dist {
namespace {

TEST(CommPolicy, AbortsAfterAFailureOrWhileAnExceptionUnwinds) {
  EXPECT_EQ(choose_teardown(false, 0), Teardown::kDestroy);
  EXPECT_EQ(choose_teardown(true, 0), Teardown::kAbort);
  EXPECT_EQ(choose_teardown(false, 1), Teardown::kAbort);
}

// A destructor run by unwinding sees the exception in flight: the decision it takes there.
TEST(CommPolicy, ADestructorRunByUnwindingChoosesAbort) {
  struct Probe {
    Teardown* seen;
    ~Probe() { *seen = choose_teardown(false, std::uncaught_exceptions()); }
  };
  Teardown seen = Teardown::kDestroy;
  try {
    Probe probe{&seen};
    throw std::runtime_error("a rank's error");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(seen, Teardown::kAbort);
  { Probe quiet{&seen}; }
  EXPECT_EQ(seen, Teardown::kDestroy);
}

}  // namespace
}  // namespace crsm::dist
