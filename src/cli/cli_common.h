#pragma once

// Shared plumbing of the crsm_train subcommands: Boost.Program_options parsing with
// errors that name the option, and the exit statuses every command uses.

#include <boost/program_options.hpp>

#include <string>

namespace crsm::cli {

namespace po = boost::program_options;

// Parses argv (after the subcommand name). Returns false after printing help (when
// --help was given); throws po::error for unknown options or bad values.
bool parse_options(int argc, char** argv, const std::string& usage,
                   const po::options_description& options, po::variables_map& vm,
                   const po::positional_options_description* positional = nullptr);

}  // namespace crsm::cli
