#pragma once

#include <string>

namespace crsm::cli {

// A file or directory CRSM-dist ships (data/ and configs/ in the source tree, installed
// into <prefix>/share/crsm/): beside the running program's installation first (it runs
// from <prefix>/bin or <prefix>/libexec/crsm), then in the source tree it was built from.
// UsageError naming the places and `flag` (the option that would have named it) when
// none has it. `relative` starts with its folder: "data/arc/eval", "configs/small.json".
std::string bundled_file(const std::string& relative, const std::string& flag);

// bundled_file("data/" + relative, flag).
std::string bundled_data(const std::string& relative, const std::string& flag);

}  // namespace crsm::cli
