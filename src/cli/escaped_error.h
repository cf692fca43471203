#pragma once

#include <exception>
#include <string>

namespace crsm::cli {

// How crsm_train ends for an exception that escaped a command: our errors are printed as
// they are (status 2; 5 for a collective timeout; 4 and the message alone for a command
// stopped by a preemption signal), a bad flag with a pointer to --help,
// an allocation failure as running out of memory, and anything else, which is a bug, as
// one line naming the command and asking for a report (status 70). Never a stack trace.
struct EscapedError {
  int status;
  std::string message;
};
EscapedError describe_escaped(const std::string& command, const std::exception_ptr& escaped);

}  // namespace crsm::cli
