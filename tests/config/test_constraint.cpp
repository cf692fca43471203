#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "config/constraint.h"
#include "config/run_config.h"

namespace {

using crsm::Constraint;
using nlohmann::json;

// The message a flag's text is refused with, or "" when it is accepted.
std::string refusal(const Constraint& c, const std::string& text) {
  try {
    c.from_text(text, "--flag");
  } catch (const crsm::UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(Constraint, IntegersAreWholeNumbersInRange) {
  const auto c = Constraint::integer(1, 64);
  EXPECT_EQ(c.expected(), "an integer from 1 to 64");
  EXPECT_EQ(c.from_text("64", "--flag"), json(64));
  for (const char* bad : {"0", "65", "-5", "2.5", "1e3", "", " 5", "5 ", "0x10", "abc", "99999999999999999999"})
    EXPECT_NE(refusal(c, bad), "") << "'" << bad << "' should be refused";
  EXPECT_EQ(refusal(c, "2.5"), "--flag 2.5: expected an integer from 1 to 64");
  EXPECT_EQ(refusal(c, ""), "--flag \"\": expected an integer from 1 to 64");
  EXPECT_TRUE(c.allows(json(3)));
  EXPECT_FALSE(c.allows(json(3.0))) << "a config's 3.0 is not an integer";
  EXPECT_FALSE(c.allows(json("3")));
  EXPECT_EQ(Constraint::integer(0).expected(), "an integer >= 0");
  EXPECT_FALSE(Constraint::integer(0).allows(json(std::numeric_limits<uint64_t>::max())));
}

TEST(Constraint, NumbersAreFiniteAndInTheirInterval) {
  const auto c = Constraint::number(0, 1, /*lo_open=*/true);
  EXPECT_EQ(c.expected(), "a number in (0, 1]");
  EXPECT_EQ(c.from_text("1e-3", "--flag"), json(1e-3));
  for (const char* bad : {"0", "1.5", "-0.1", "nan", "NaN", "inf", "-inf", "1e400", "", "0.5x", "abc"})
    EXPECT_NE(refusal(c, bad), "") << "'" << bad << "' should be refused";
  EXPECT_EQ(refusal(c, "nan"), "--flag nan: expected a number in (0, 1]");
  const auto positive = Constraint::number(0, INFINITY, true);
  EXPECT_EQ(positive.expected(), "a finite number > 0");
  EXPECT_NE(refusal(positive, "inf"), "");
  EXPECT_EQ(refusal(positive, "1e30"), "");
  EXPECT_TRUE(positive.allows(json(2)));
  EXPECT_FALSE(positive.allows(json("2")));
}

TEST(Constraint, WordsPatternsListsAndAnExtraWord) {
  const auto precision = Constraint::word({"fp32", "bf16"});
  EXPECT_EQ(precision.expected(), "one of fp32, bf16");
  EXPECT_EQ(refusal(precision, "fp16"), "--flag fp16: expected one of fp32, bf16");
  EXPECT_EQ(refusal(precision, "bf16"), "");

  const Constraint& device = crsm::config_constraint("device");
  EXPECT_EQ(refusal(device, "cuda:1"), "");
  EXPECT_EQ(refusal(device, "cuda"), "");
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:12345", "CPU", " cpu"})
    EXPECT_NE(refusal(device, bad), "") << "'" << bad << "' should be refused";
  // A long argument is refused, not a stack overflow (as a recursive regex would give).
  EXPECT_NE(refusal(device, "cuda:" + std::string(200000, '1')), "");

  const auto worlds = Constraint::integer_list(1, 100);
  EXPECT_EQ(worlds.from_text("1,8,64", "--flag"), json({1, 8, 64}));
  for (const char* bad : {"", "1,,8", "1,8,", ",1", "2.5", "0", "1,101", "a,b"})
    EXPECT_NE(refusal(worlds, bad), "") << "'" << bad << "' should be refused";
  EXPECT_FALSE(worlds.allows(json::array()));

  const auto warmup = Constraint::integer(0).or_word("auto");
  EXPECT_EQ(warmup.expected(), "an integer >= 0 or \"auto\"");
  EXPECT_EQ(warmup.from_text("auto", "--flag"), json("auto"));
  EXPECT_EQ(warmup.from_text("7", "--flag"), json(7));
  EXPECT_NE(refusal(warmup, "-7"), "");

  EXPECT_NE(refusal(Constraint::path(), ""), "");
  EXPECT_EQ(refusal(Constraint::text(), ""), "");
}

// A string judged by a function that says what is wrong: the refusal adds the reason to
// what is expected.
TEST(Constraint, AnExplainedRefusalSaysWhatIsWrong) {
  const auto even = Constraint::explained(
      [](const std::string& s) { return s.size() % 2 == 0 ? std::string() : "'" + s + "' has an odd length"; },
      "a string of even length");
  EXPECT_EQ(refusal(even, "ab"), "");
  EXPECT_EQ(refusal(even, "abc"), "--flag abc: expected a string of even length ('abc' has an odd length)");
  EXPECT_TRUE(even.allows(json("abcd")));
  EXPECT_FALSE(even.allows(json("a")));
}

// A flag that sets a config key and the key itself are refused with the same words.
TEST(Constraint, AFlagAndItsConfigKeyShareTheirConstraint) {
  for (const char* key : {"batch_size", "lr", "zero_stage", "device", "dropout"}) {
    const Constraint& c = crsm::config_constraint(key);
    std::string from_config;
    try {
      crsm::parse_run_config(json{{key, "bogus"}}, "x.json");
    } catch (const crsm::ConfigError& e) {
      from_config = e.what();
    }
    EXPECT_NE(from_config.find("key '" + std::string(key) + "': expected " + c.expected()), std::string::npos)
        << from_config;
    EXPECT_NE(refusal(c, "bogus").find("expected " + c.expected()), std::string::npos);
  }
}

}  // namespace
