#pragma once

// What every benchmark program shares besides its timing (bench_timing.h): one command
// line, handled alike (its options as cli::Option tables, as crsm_train's commands declare
// theirs, plus --json and --help), the bundled configs wherever the program runs, and
// one way to print a measurement.

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bundled_data.h"
#include "cli/options.h"
#include "dist/runtime.h"

namespace crsm::bench {

// Parses argv (argv[0] is the program) against `options` plus --json. --help prints
// `usage` and the options and exits 0; an unknown flag or a refused value says why and
// exits 2. Under mpirun only rank 0 prints.
inline cli::ParsedOptions parse_command_line(int argc, char** argv, const std::string& usage,
                                             std::vector<cli::Option> options) {
  options.push_back(cli::Option("json", Constraint::boolean(), "one JSON object per measurement instead of a table"));
  const std::string program = std::filesystem::path(argv[0]).filename().string();
  try {
    auto parsed = cli::parse_options(argc, argv, usage, options);
    if (!parsed) std::exit(0);
    return *parsed;
  } catch (const std::exception& e) {  // boost::program_options::error, UsageError
    if (dist::runtime().is_root()) std::fprintf(stderr, "%s: %s (see %s --help)\n", program.c_str(), e.what(), program.c_str());
    std::exit(2);
  }
}

// configs/<name> as CRSM-dist ships it (cli::bundled_file).
inline std::string bundled_config(const std::string& name) { return cli::bundled_file("configs/" + name, "--config"); }

// A table for people, or with --json one JSON object per measurement, named by its
// "benchmark" field. Only the root rank prints.
struct Report {
  bool json = false;
  bool root = true;
  // A heading or note of the table (not printed with --json).
  void line(const std::string& text) const {
    if (!root || json) return;
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
  }
  void row(const std::string& name, const nlohmann::json& fields, const std::string& text) const {
    if (!root) return;
    if (json) {
      nlohmann::json j = fields;
      j["benchmark"] = name;
      std::cout << j.dump() << std::endl;
    } else {
      std::printf("%-44s %s\n", name.c_str(), text.c_str());
      std::fflush(stdout);
    }
  }
};

inline std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string format(const char* fmt, ...) {
  char text[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(text, sizeof text, fmt, args);
  va_end(args);
  return text;
}

}  // namespace crsm::bench
