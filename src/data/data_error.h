#pragma once

#include <stdexcept>

namespace crsm::data {

// Every failure of the data layer: the message names the bad input (a file, a key,
// an option) and what was expected instead.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace crsm::data
