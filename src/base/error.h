#pragma once

#include <stdexcept>
#include <string>

namespace crsm {

// The base of every error this project throws on purpose: the message names the bad
// input (a flag, a config key, a file and the field in it) and what was expected.
// crsm_train prints such a message as it is and exits 2; anything else that reaches
// main() is a bug and is reported as one.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A command-line value, or a combination of values, that cannot work.
class UsageError : public Error {
 public:
  using Error::Error;
};

// A file that cannot be read, written, renamed or synced; the message names it and
// gives the system's reason.
class FileError : public Error {
 public:
  using Error::Error;
};

// A command that stopped at a safe point because SIGTERM or SIGUSR1 (preemption) arrived.
// Not an Error: nothing is wrong with the input. crsm_train prints the message, which
// names the signal and what was kept, and exits with status 4.
class Preempted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace crsm
