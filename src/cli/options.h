#pragma once

// The options of a crsm_train command, declared once as a table: each flag with the
// Constraint its values obey (the config key's own, where the flag sets a key), its
// default and its help. Parsing checks every given value and every default against
// its constraint before the command does any work, so a bad value is refused with a
// message naming the flag and what it accepts; --help shows the same words.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/constraint.h"
#include "config/run_config.h"

namespace crsm::cli {

class Option {
 public:
  Option(std::string flag, Constraint constraint, std::string help);
  // A flag that sets the config key `key` (--batch-size, batch_size): it takes the key's
  // constraint, and a given value overrides the config file's.
  static Option for_key(std::string flag, std::string key, std::string help);

  Option with_default(std::string text) &&;
  Option mandatory() &&;
  Option many() &&;        // several values: --input a.txt b.txt
  Option positional() &&;  // bare arguments fill it (plot RUN_DIR...); implies many()

  const std::string& flag() const { return flag_; }
  const Constraint& constraint() const { return constraint_; }
  const std::string& help() const { return help_; }
  const std::optional<std::string>& default_text() const { return default_; }
  const std::string& config_key() const { return config_key_; }
  bool is_mandatory() const { return mandatory_; }
  bool is_many() const { return many_; }
  bool is_positional() const { return positional_; }

 private:
  std::string flag_;
  Constraint constraint_;
  std::string help_;
  std::optional<std::string> default_;
  std::string config_key_;
  bool mandatory_ = false, many_ = false, positional_ = false;
};

// The checked values of one command line.
class ParsedOptions {
 public:
  bool given(const std::string& flag) const;  // on the command line, not by default
  bool has(const std::string& flag) const;    // given or defaulted

  // The value as the constraint parsed it (a JSON integer, number, string, bool or list).
  // std::logic_error for a flag the table lacks or that has no value: a bug, not input.
  const nlohmann::json& value(const std::string& flag) const;
  int64_t integer(const std::string& flag) const { return value(flag).get<int64_t>(); }
  double number(const std::string& flag) const { return value(flag).get<double>(); }
  std::string text(const std::string& flag) const { return value(flag).get<std::string>(); }
  bool is_set(const std::string& flag) const { return has(flag) && value(flag).get<bool>(); }
  std::vector<std::string> texts(const std::string& flag) const;
  std::vector<int64_t> integers(const std::string& flag) const { return value(flag).get<std::vector<int64_t>>(); }

  // Sets the config key of every given for_key flag, then checks the rules between keys.
  void apply_to(RunConfig& config) const;

  // The words parsed (after the command's name), and every option with a value, given or
  // defaulted, as the command uses it.
  const std::vector<std::string>& arguments() const { return arguments_; }
  const nlohmann::json& resolved() const { return values_; }
  std::string value_text(const std::string& flag) const;  // as given: 8, 1e-3, bf16

 private:
  friend std::optional<ParsedOptions> parse_options(int, char**, const std::string&, const std::vector<Option>&);
  std::vector<Option> table_;
  nlohmann::json values_ = nlohmann::json::object();
  std::vector<std::string> given_;
  std::vector<std::string> arguments_;
};

// A command's option table with the config's own two: --set KEY=VALUE (repeatable: any
// config key, checked by the constraint the config file's value would be; apply_to sets
// them after the file and refuses a key that a flag sets too) and --print-config (the
// command prints the resolved config as JSON and exits).
std::vector<Option> with_config_flags(std::vector<Option> table);
// --print-config's output (rank 0); the command's exit status.
int print_config(const RunConfig& config);

// A default as an option table shows it ("0.1", "250"), from the value a group of options
// holds (train/options.h), so that the value is written once.
std::string default_text(double value);
std::string default_text(int64_t value);

// Parses argv (after the command name). nullopt after printing --help (on rank 0 only:
// under mpirun every rank parses the same flags). Throws boost::program_options::error
// for an unknown or repeated flag and UsageError for a missing or refused value.
std::optional<ParsedOptions> parse_options(int argc, char** argv, const std::string& usage,
                                           const std::vector<Option>& table);

// A command line built in code (the pipeline's stages): every flag must be in the
// command's table and every value is checked by its constraint as the command's own argv
// would be, so a stage that names a renamed flag fails a unit test, not a run. The
// pipeline prints text() and runs the command with parse().
class CommandLine {
 public:
  CommandLine(std::string command, const std::vector<Option>& table);
  // std::logic_error for a flag the table lacks, or values it cannot take (a switch with
  // one, a single-valued flag with several).
  CommandLine& set(const std::string& flag, std::vector<std::string> values);
  CommandLine& set(const std::string& flag, const std::string& value) { return set(flag, std::vector<std::string>{value}); }
  CommandLine& set(const std::string& flag, int64_t value) { return set(flag, std::to_string(value)); }
  CommandLine& set(const std::string& flag) { return set(flag, std::vector<std::string>{}); }  // a switch

  // "crsm_train train --config 'a b.json' ...", quoted for a POSIX shell.
  std::string text() const;
  // The values as the command parses them (defaults filled in, every value checked).
  ParsedOptions parse() const;

 private:
  std::string command_;
  const std::vector<Option>& table_;
  std::vector<std::string> args_;
};

}  // namespace crsm::cli
