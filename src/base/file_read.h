#pragma once

// Whole-file reads of the small files users hand us (configs, indexes, manifests).

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace crsm::base {

// The file's bytes. FileError naming the path when it is missing, not a regular file
// (a directory, a device) or unreadable.
std::string read_file(const std::string& path);

// The file's lines (without their '\n'), numbered from 1, streamed to `take` until it
// returns false: a long file is read only as far as it is needed. FileError as read_file.
void for_each_line(const std::string& path, const std::function<bool(const std::string& line, int64_t number)>& take);

// read_file, parsed as JSON. FileError naming the path when it cannot be read or is not
// well-formed JSON (with the parser's position).
nlohmann::json read_json_file(const std::string& path);

}  // namespace crsm::base
