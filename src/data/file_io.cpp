#include "data/file_io.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/data_error.h"

namespace crsm::data {

std::string read_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    throw DataError(path + ": not found (expected a readable file)");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in) throw DataError(path + ": cannot be read");
  return bytes.str();
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw DataError(path + ": malformed JSON (" + e.what() + ")");
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw DataError(path + ": cannot be written");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw DataError(path + ": cannot be written (" + ec.message() + ")");
  }
}

}  // namespace crsm::data
