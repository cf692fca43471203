#pragma once

// What the values of one command-line option or config key may be, stated once. The
// flag parser (src/cli) and the config loader check values against the same
// Constraint, so a value is refused with the same words, naming the flag or the key
// and the allowed values, whichever way it came in.

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace crsm {

class Constraint {
 public:
  static constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

  static Constraint integer(int64_t min, int64_t max = kNoMax);
  // Always finite; an infinite `hi` leaves the top open ("a finite number >= 0").
  static Constraint number(double lo, double hi, bool lo_open = false, bool hi_open = false);
  static Constraint boolean();  // a config true/false, a command-line switch
  static Constraint word(std::vector<std::string> words);
  static Constraint text();  // any string, the empty one included
  static Constraint path();  // a non-empty string
  // A string for which `test` holds; `description` says what that is ("cpu, cuda or
  // cuda:N"). A predicate rather than a regular expression: libstdc++'s regex recurses
  // once per character and would overflow the stack on a long argument.
  static Constraint satisfying(std::function<bool(const std::string&)> test, std::string description);
  // The same, with a reason: `why_not` returns "" for a good string, else what is wrong
  // with it ("duplicate decoding mode 'greedy'"), which the refusal adds to what is expected.
  static Constraint explained(std::function<std::string(const std::string&)> why_not, std::string description);
  // Comma-separated on the command line, a JSON array in a config; at least one.
  static Constraint integer_list(int64_t min, int64_t max = kNoMax);
  // Also accepts the string `w` (an "auto" beside a number).
  Constraint or_word(std::string w) const;

  bool is_switch() const { return kind_ == Kind::kBoolean; }

  // What a valid value looks like: "an integer from 1 to 64", "a number in (0, 10]",
  // "one of fp32, bf16".
  std::string expected() const;

  // Whether a JSON value (from a config file, or from_text) satisfies the constraint.
  bool allows(const nlohmann::json& value) const;

  // The value a command-line text stands for ("12" -> 12, "1e-3" -> 0.001, "bf16"),
  // checked. UsageError "<name> <text>: expected ..." when the text is not one.
  nlohmann::json from_text(const std::string& text, const std::string& name) const;

 private:
  enum class Kind { kInteger, kNumber, kBoolean, kWord, kText, kPattern, kIntegerList };
  explicit Constraint(Kind kind) : kind_(kind) {}
  bool in_range(const nlohmann::json& v) const;
  bool is_extra_word(const nlohmann::json& v) const;
  nlohmann::json parse_text(const std::string& text) const;

  Kind kind_;
  int64_t min_ = 0, max_ = kNoMax;
  double lo_ = 0, hi_ = 0;
  bool lo_open_ = false, hi_open_ = false;
  bool non_empty_ = false;
  std::vector<std::string> words_;        // kWord: the allowed words
  std::vector<std::string> extra_words_;  // or_word
  std::function<bool(const std::string&)> test_;
  std::function<std::string(const std::string&)> why_not_;
  std::string description_;
};

}  // namespace crsm
