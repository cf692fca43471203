#include "cli/options.h"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "base/error.h"
#include "dist/runtime.h"

namespace crsm::cli {
namespace {

namespace po = boost::program_options;
using nlohmann::json;

std::string described(const Option& o) {
  std::string text = o.help();
  if (!o.constraint().is_switch()) text += " [" + o.constraint().expected() + "]";
  if (o.default_text()) text += " (default: " + (o.default_text()->empty() ? "\"\"" : *o.default_text()) + ")";
  return text;
}

po::options_description describe(const std::vector<Option>& table) {
  po::options_description d("options");
  for (const auto& o : table) {
    const std::string help = described(o);
    if (o.constraint().is_switch())
      d.add_options()(o.flag().c_str(), po::bool_switch(), help.c_str());
    else if (o.is_many())
      d.add_options()(o.flag().c_str(), po::value<std::vector<std::string>>()->multitoken(), help.c_str());
    else
      d.add_options()(o.flag().c_str(), po::value<std::string>(), help.c_str());
  }
  d.add_options()("help,h", "show this help");
  return d;
}

// A list flag's values, each checked; a list constraint (1,8,64) takes one text.
json checked_values(const Option& o, const std::vector<std::string>& texts) {
  if (!o.is_many()) return o.constraint().from_text(texts.at(0), "--" + o.flag());
  json list = json::array();
  for (const auto& t : texts) list.push_back(o.constraint().from_text(t, "--" + o.flag()));
  return list;
}

}  // namespace

Option::Option(std::string flag, Constraint constraint, std::string help)
    : flag_(std::move(flag)), constraint_(std::move(constraint)), help_(std::move(help)) {}

Option Option::for_key(std::string flag, std::string key, std::string help) {
  Option o(std::move(flag), config_constraint(key), std::move(help) + " (config: " + key + ")");
  o.config_key_ = std::move(key);
  return o;
}

Option Option::with_default(std::string text) && {
  default_ = std::move(text);
  return std::move(*this);
}

Option Option::mandatory() && {
  mandatory_ = true;
  return std::move(*this);
}

Option Option::many() && {
  many_ = true;
  return std::move(*this);
}

Option Option::positional() && {
  positional_ = many_ = true;
  return std::move(*this);
}

std::string default_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

std::string default_text(int64_t value) { return std::to_string(value); }

bool ParsedOptions::given(const std::string& flag) const {
  return std::find(given_.begin(), given_.end(), flag) != given_.end();
}

bool ParsedOptions::has(const std::string& flag) const { return values_.contains(flag); }

const json& ParsedOptions::value(const std::string& flag) const {
  const auto it = values_.find(flag);
  if (it == values_.end()) throw std::logic_error("option --" + flag + " has no value (not in the table, or no default)");
  return *it;
}

std::vector<std::string> ParsedOptions::texts(const std::string& flag) const {
  return value(flag).get<std::vector<std::string>>();
}

void ParsedOptions::apply_to(RunConfig& config) const {
  for (const auto& o : table_)
    if (!o.config_key().empty() && given(o.flag()))
      set_config_value(config, o.config_key(), value(o.flag()), "--" + o.flag());
  check_run_config(config, "the command line and config");
}

std::optional<ParsedOptions> parse_options(int argc, char** argv, const std::string& usage,
                                           const std::vector<Option>& table) {
  const po::options_description description = describe(table);
  po::positional_options_description positional;
  for (const auto& o : table)
    if (o.is_positional()) positional.add(o.flag().c_str(), -1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(description).positional(positional).run(), vm);
  if (vm.count("help")) {
    if (dist::runtime().is_root()) std::cout << usage << "\n\n" << description << "\n";
    return std::nullopt;
  }
  ParsedOptions parsed;
  parsed.table_ = table;
  for (const auto& o : table) {
    const std::string flag = "--" + o.flag();
    if (o.constraint().is_switch()) {
      parsed.values_[o.flag()] = vm.count(o.flag()) && vm[o.flag()].as<bool>();
      if (parsed.values_[o.flag()].get<bool>()) parsed.given_.push_back(o.flag());
    } else if (vm.count(o.flag())) {
      parsed.values_[o.flag()] = checked_values(o, o.is_many() ? vm[o.flag()].as<std::vector<std::string>>()
                                                                : std::vector<std::string>{vm[o.flag()].as<std::string>()});
      parsed.given_.push_back(o.flag());
    } else if (o.default_text()) {
      parsed.values_[o.flag()] = checked_values(o, {*o.default_text()});
    } else if (o.is_mandatory()) {
      throw UsageError(flag + " is required (" + o.help() + "; expected " + o.constraint().expected() + ")");
    }
  }
  return parsed;
}

CommandLine::CommandLine(std::string command, const std::vector<Option>& table)
    : command_(std::move(command)), table_(table) {}

CommandLine& CommandLine::set(const std::string& flag, std::vector<std::string> values) {
  const auto o = std::find_if(table_.begin(), table_.end(), [&](const Option& x) { return x.flag() == flag; });
  if (o == table_.end()) throw std::logic_error("crsm_train " + command_ + " has no option --" + flag);
  const bool fits = o->constraint().is_switch() ? values.empty() : o->is_many() ? !values.empty() : values.size() == 1;
  if (!fits)
    throw std::logic_error("crsm_train " + command_ + " --" + flag + " cannot take " + std::to_string(values.size()) +
                           " values");
  args_.push_back("--" + flag);
  args_.insert(args_.end(), values.begin(), values.end());
  return *this;
}

std::string CommandLine::text() const {
  const auto quoted = [](const std::string& word) {
    if (!word.empty() && word.find_first_of(" \t\n'\"$\\*?;&|<>()`#~{}[]") == std::string::npos) return word;
    std::string q = "'";
    for (char c : word) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string line = "crsm_train " + command_;
  for (const auto& a : args_) line += " " + quoted(a);
  return line;
}

ParsedOptions CommandLine::parse() const {
  std::vector<std::string> words = args_;
  words.insert(words.begin(), command_);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  auto parsed = parse_options(static_cast<int>(words.size()), argv.data(), "", table_);
  if (!parsed) throw std::logic_error("crsm_train " + command_ + ": a built command line asked for --help");
  return std::move(*parsed);
}

}  // namespace crsm::cli
