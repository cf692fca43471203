#pragma once

#include "base/error.h"

namespace crsm::data {

// Every failure of the data layer: the message names the bad input (a file, a key,
// an option) and what was expected instead.
class DataError : public Error {
 public:
  using Error::Error;
};

}  // namespace crsm::data
