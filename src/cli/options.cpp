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

// "batch_size=8" as a config key and its checked value.
std::pair<std::string, json> parse_setting(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) throw UsageError("--set " + text + ": no '=' between a key and its value");
  if (eq == 0) throw UsageError("--set " + text + ": no key before '='");
  const std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  const Constraint* c = nullptr;
  try {
    c = &config_constraint(key);
  } catch (const std::out_of_range&) {
    std::string keys;
    for (const auto& k : config_key_names()) keys += (keys.empty() ? "" : ", ") + k;
    throw UsageError("--set " + text + ": '" + key + "' is not a config key (keys: " + keys + ")");
  }
  if (c->is_switch()) {
    if (value == "true" || value == "false") return {key, value == "true"};
    throw UsageError("--set " + text + ": " + key + " takes true or false");
  }
  try {
    return {key, c->from_text(value, "--set " + key)};
  } catch (const UsageError&) {
    throw UsageError("--set " + text + ": " + key + " takes " + c->expected());
  }
}

std::string setting_problem(const std::string& text) {
  try {
    parse_setting(text);
    return "";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    return what.substr(what.find(": ") + 2);
  }
}

}  // namespace

std::vector<Option> with_config_flags(std::vector<Option> table) {
  table.push_back(Option("set", Constraint::explained(setting_problem, "KEY=VALUE with KEY a config key"),
                         "a config key's value, checked as in the config file (repeatable: --set lr=1e-3 --set seed=7)")
                      .many());
  table.push_back(Option("print-config", Constraint::boolean(), "print the resolved config as JSON and exit"));
  return table;
}

int print_config(const RunConfig& config) {
  if (dist::runtime().is_root()) std::printf("%s\n", to_json(config).dump(2).c_str());
  return 0;
}

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

std::string ParsedOptions::value_text(const std::string& flag) const {
  const json& v = value(flag);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::vector<std::string> ParsedOptions::texts(const std::string& flag) const {
  return value(flag).get<std::vector<std::string>>();
}

void ParsedOptions::apply_to(RunConfig& config) const {
  if (has("set"))
    for (const auto& text : texts("set")) {
      const auto [key, value] = parse_setting(text);
      for (const auto& o : table_)
        if (o.config_key() == key && given(o.flag()))
          throw UsageError("--set " + text + " and --" + o.flag() + " " + value_text(o.flag()) + " both set " + key +
                           ": give one");
      set_config_value(config, key, value, "--set " + text);
    }
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
  const bool printing_config = vm.count("print-config") && vm["print-config"].as<bool>();
  ParsedOptions parsed;
  parsed.table_ = table;
  parsed.arguments_.assign(argv + std::min(argc, 1), argv + argc);
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
    } else if (o.is_mandatory() && !printing_config) {  // printing the config needs no more
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
