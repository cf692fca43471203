#include <gtest/gtest.h>

#include <boost/program_options/errors.hpp>
#include <c10/util/Exception.h>

#include <new>
#include <stdexcept>

#include "base/error.h"
#include "cli/escaped_error.h"
#include "dist/communicator.h"

namespace {

using crsm::cli::describe_escaped;

template <typename E>
crsm::cli::EscapedError escaped(const E& e) {
  return describe_escaped("train", std::make_exception_ptr(e));
}

TEST(EscapedError, OurErrorsArePrintedAsTheyAre) {
  const auto usage = escaped(crsm::UsageError("--lr nan: expected a finite number > 0"));
  EXPECT_EQ(usage.status, 2);
  EXPECT_EQ(usage.message, "crsm_train train: error: --lr nan: expected a finite number > 0");
  EXPECT_EQ(escaped(crsm::dist::CommTimeout("all_reduce: not complete after 5 s")).status, 5);
  const auto failure = escaped(crsm::dist::CommFailure("rank 1: NCCL all_reduce: unhandled system error (socket closed)"));
  EXPECT_EQ(failure.status, 6);
  EXPECT_EQ(failure.message, "crsm_train train: error: rank 1: NCCL all_reduce: unhandled system error (socket closed)");
  EXPECT_EQ(escaped(crsm::dist::CommError("--device cuda:0 with several ranks needs the NCCL backend")).status, 2);
  const auto flag = escaped(boost::program_options::unknown_option("--bogus"));
  EXPECT_EQ(flag.status, 2);
  EXPECT_NE(flag.message.find("(see crsm_train train --help)"), std::string::npos) << flag.message;
}

TEST(EscapedError, AnythingElseIsOneLineAskingForABugReport) {
  const auto plain = escaped(std::logic_error("option --x has no value\nsecond line"));
  EXPECT_EQ(plain.status, 70);
  EXPECT_EQ(plain.message.find('\n'), std::string::npos) << plain.message;
  EXPECT_NE(plain.message.find("crsm_train train: internal error (option --x has no value)"), std::string::npos)
      << plain.message;
  EXPECT_NE(plain.message.find("please report it"), std::string::npos) << plain.message;

  const auto torch = escaped(c10::Error("index 7 is out of bounds", "frame #0: c10::detail::torchCheckFail\nframe #1"));
  EXPECT_EQ(torch.status, 70);
  EXPECT_NE(torch.message.find("c10::Error: index 7 is out of bounds"), std::string::npos) << torch.message;
  EXPECT_EQ(torch.message.find("frame #"), std::string::npos) << "no stack trace: " << torch.message;

  const auto unknown = describe_escaped("plot", std::make_exception_ptr(42));
  EXPECT_EQ(unknown.status, 70);
  EXPECT_NE(unknown.message.find("crsm_train plot: internal error (an exception of unknown type)"),
            std::string::npos);
}

TEST(EscapedError, RunningOutOfMemoryIsSaidSo) {
  const auto plain = escaped(std::bad_alloc());
  EXPECT_EQ(plain.status, 2);
  EXPECT_NE(plain.message.find("out of memory"), std::string::npos);
  const auto torch = escaped(c10::Error("DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes.", ""));
  EXPECT_EQ(torch.status, 2);
  EXPECT_NE(torch.message.find("error: out of memory: DefaultCPUAllocator"), std::string::npos) << torch.message;
}

}  // namespace
