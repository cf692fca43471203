#pragma once

// Whole-file reads and writes for the small metadata files of the data layer.

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace crsm::data {

// The file's bytes; DataError naming the path if it cannot be read.
std::string read_file(const std::string& path);

// Parsed JSON; DataError naming the path if it is missing or malformed.
nlohmann::json read_json_file(const std::string& path);

// Writes path + ".tmp" and renames it, so `path` only ever holds complete contents.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace crsm::data
