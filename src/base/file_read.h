#pragma once

// Whole-file reads of the small files users hand us (configs, indexes, manifests).

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace crsm::base {

// The file's bytes. FileError naming the path when it is missing, not a regular file
// (a directory, a device) or unreadable.
std::string read_file(const std::string& path);

// read_file, parsed as JSON. FileError naming the path when it cannot be read or is not
// well-formed JSON (with the parser's position).
nlohmann::json read_json_file(const std::string& path);

}  // namespace crsm::base
