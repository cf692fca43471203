#include <gtest/gtest.h>

#include <boost/program_options/errors.hpp>

#include <regex>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/options.h"
#include "config/run_config.h"

namespace {

using crsm::Constraint;
using crsm::cli::Option;
using crsm::cli::parse_options;

const std::vector<Option>& table() {
  static const std::vector<Option> t = {
      Option("out", Constraint::path(), "where").mandatory(),
      Option("steps", Constraint::integer(1), "how many").with_default("10"),
      Option("rate", Constraint::number(0, 1), "how fast"),
      Option("force", Constraint::boolean(), "replace"),
      Option("input", Constraint::path(), "files").many(),
      Option::for_key("batch-size", "batch_size", "rows"),
  };
  return t;
}

// Parses words as a command line after the command name.
std::optional<crsm::cli::ParsedOptions> parse(std::vector<std::string> words) {
  words.insert(words.begin(), "cmd");
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  return parse_options(static_cast<int>(argv.size()), argv.data(), "usage", table());
}

std::string refusal(const std::vector<std::string>& words) {
  try {
    parse(words);
  } catch (const crsm::UsageError& e) {
    return e.what();
  } catch (const boost::program_options::error& e) {
    return e.what();
  }
  return "";
}

TEST(Options, ValuesDefaultsSwitchesAndLists) {
  const auto o = parse({"--out", "x", "--input", "a", "b", "--force"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->text("out"), "x");
  EXPECT_EQ(o->integer("steps"), 10);
  EXPECT_FALSE(o->given("steps"));
  EXPECT_TRUE(o->has("steps"));
  EXPECT_FALSE(o->has("rate"));
  EXPECT_TRUE(o->is_set("force"));
  EXPECT_EQ(o->texts("input"), (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(parse({"--out", "x"})->is_set("force"));
}

TEST(Options, EveryValueIsCheckedAndTheMessageNamesTheFlag) {
  EXPECT_EQ(refusal({"--out", "x", "--steps", "-5"}), "--steps -5: expected an integer >= 1");
  EXPECT_EQ(refusal({"--out", "x", "--rate", "nan"}), "--rate nan: expected a number in [0, 1]");
  EXPECT_EQ(refusal({"--out", ""}), "--out \"\": expected a non-empty path");
  EXPECT_NE(refusal({"--steps", "3"}).find("--out is required"), std::string::npos);
  EXPECT_NE(refusal({"--out", "x", "--bogus", "1"}).find("bogus"), std::string::npos);
  EXPECT_NE(refusal({"--out", "x", "--steps", "1", "--steps", "2"}).find("steps"), std::string::npos);
  EXPECT_EQ(refusal({"--out", "x", "--batch-size", "0"}), "--batch-size 0: expected " +
                                                               crsm::config_constraint("batch_size").expected());
}

TEST(Options, ABadDefaultIsCaughtOnEveryParse) {
  const std::vector<Option> broken = {Option("n", Constraint::integer(1), "n").with_default("0")};
  std::string cmd = "cmd";
  char* argv[] = {cmd.data()};
  EXPECT_THROW(parse_options(1, argv, "usage", broken), crsm::UsageError);
}

TEST(Options, ConfigFlagsOverrideTheirKeys) {
  crsm::RunConfig config;
  config.train.batch_size = 32;
  parse({"--out", "x", "--batch-size", "6"})->apply_to(config);
  EXPECT_EQ(config.train.batch_size, 6);
  crsm::RunConfig untouched;
  untouched.train.batch_size = 32;
  parse({"--out", "x"})->apply_to(untouched);
  EXPECT_EQ(untouched.train.batch_size, 32);
}

TEST(Options, HelpShowsWhatEachOptionAccepts) {
  testing::internal::CaptureStdout();
  EXPECT_FALSE(parse({"--help"}));
  // Boost wraps long lines; the words matter, not where the lines break.
  const std::string help = std::regex_replace(testing::internal::GetCapturedStdout(), std::regex("\\s+"), " ");
  EXPECT_NE(help.find("how many [an integer >= 1] (default: 10)"), std::string::npos) << help;
  EXPECT_NE(help.find("--force replace --input"), std::string::npos) << "a switch takes no value: " << help;
  EXPECT_NE(help.find("rows (config: batch_size) [" + crsm::config_constraint("batch_size").expected() + "]"),
            std::string::npos)
      << help;
}

}  // namespace

namespace {

using crsm::cli::CommandLine;

TEST(CommandLine, ParsesAsTheSameWordsOnACommandLineWould) {
  CommandLine line("cmd", table());
  line.set("out", "a dir/x").set("steps", 3).set("force").set("input", std::vector<std::string>{"a", "b'c"});
  EXPECT_EQ(line.text(), "crsm_train cmd --out 'a dir/x' --steps 3 --force --input a 'b'\\''c'");
  const auto o = line.parse();
  EXPECT_EQ(o.text("out"), "a dir/x");
  EXPECT_EQ(o.integer("steps"), 3);
  EXPECT_TRUE(o.is_set("force"));
  EXPECT_EQ(o.texts("input"), (std::vector<std::string>{"a", "b'c"}));
  EXPECT_FALSE(o.has("rate"));
}

TEST(CommandLine, AFlagTheTableLacksIsABug) {
  CommandLine line("cmd", table());
  try {
    line.set("output", "x");
    FAIL() << "an unknown flag was taken";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "crsm_train cmd has no option --output");
  }
  EXPECT_THROW(line.set("force", "yes"), std::logic_error);                                 // a switch takes none
  EXPECT_THROW(line.set("out", std::vector<std::string>{"a", "b"}), std::logic_error);     // one value
  EXPECT_THROW(line.set("input", std::vector<std::string>{}), std::logic_error);           // at least one
}

TEST(CommandLine, ValuesAreCheckedByTheirConstraints) {
  EXPECT_THROW(CommandLine("cmd", table()).set("out", "x").set("steps", 0).parse(), crsm::UsageError);
  EXPECT_THROW(CommandLine("cmd", table()).set("steps", 2).parse(), crsm::UsageError);  // --out is required
}

}  // namespace

namespace {

// --print-config needs no more than the config: a command's required flags are not
// required with it, and are without it.
TEST(ConfigFlags, PrintConfigAloneLiftsTheRequiredFlags) {
  const auto t = crsm::cli::with_config_flags({Option("out", Constraint::path(), "where").mandatory()});
  const auto parse_words = [&](std::vector<std::string> words) {
    words.insert(words.begin(), "cmd");
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    return parse_options(static_cast<int>(argv.size()), argv.data(), "usage", t);
  };
  EXPECT_THROW(parse_words({}), crsm::UsageError);
  EXPECT_THROW(parse_words({"--set", "lr=0.1"}), crsm::UsageError);
  const auto printing = parse_words({"--print-config", "--set", "lr=0.1", "--set", "seed=3"});
  ASSERT_TRUE(printing);
  EXPECT_TRUE(printing->is_set("print-config"));
  crsm::RunConfig config;
  printing->apply_to(config);
  EXPECT_DOUBLE_EQ(config.train.lr, 0.1);
  EXPECT_EQ(config.seed, 3);
}

}  // namespace
