#pragma once

#include <string>

namespace crsm::cli {

// A file or directory of the data CRSM-dist ships (data/ in the source tree, installed
// into <prefix>/share/crsm/data): next to the running binary's installation first, then
// in the source tree it was built from. UsageError naming both places and `flag` (the
// option that would have named it) when neither has it.
std::string bundled_data(const std::string& relative, const std::string& flag);

}  // namespace crsm::cli
