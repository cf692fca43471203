#include "config/constraint.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "base/error.h"

namespace crsm {
namespace {

using nlohmann::json;

std::string quoted_list(const std::vector<std::string>& words, const char* last_joiner) {
  std::string s;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) s += i + 1 == words.size() ? last_joiner : ", ";
    s += words[i];
  }
  return s;
}

std::string number_text(double x) {
  std::ostringstream out;
  out << x;
  return out.str();
}

// Strict integer text: an optional sign and digits, nothing else, within int64.
bool parse_integer(const std::string& text, int64_t* out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno == ERANGE || end != text.c_str() + text.size()) return false;
  *out = v;
  return true;
}

bool parse_number(const std::string& text, double* out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return false;
  *out = v;  // ERANGE overflow gives inf, refused as not finite by the range check
  return true;
}

}  // namespace

Constraint Constraint::integer(int64_t min, int64_t max) {
  Constraint c(Kind::kInteger);
  c.min_ = min;
  c.max_ = max;
  return c;
}

Constraint Constraint::number(double lo, double hi, bool lo_open, bool hi_open) {
  Constraint c(Kind::kNumber);
  c.lo_ = lo;
  c.hi_ = hi;
  c.lo_open_ = lo_open;
  c.hi_open_ = hi_open || std::isinf(hi);
  return c;
}

Constraint Constraint::boolean() { return Constraint(Kind::kBoolean); }

Constraint Constraint::word(std::vector<std::string> words) {
  Constraint c(Kind::kWord);
  c.words_ = std::move(words);
  return c;
}

Constraint Constraint::text() { return Constraint(Kind::kText); }

Constraint Constraint::path() {
  Constraint c(Kind::kText);
  c.non_empty_ = true;
  return c;
}

Constraint Constraint::satisfying(std::function<bool(const std::string&)> test, std::string description) {
  Constraint c(Kind::kPattern);
  c.test_ = std::move(test);
  c.description_ = std::move(description);
  return c;
}

Constraint Constraint::explained(std::function<std::string(const std::string&)> why_not, std::string description) {
  Constraint c = satisfying([why_not](const std::string& s) { return why_not(s).empty(); }, std::move(description));
  c.why_not_ = std::move(why_not);
  return c;
}

Constraint Constraint::integer_list(int64_t min, int64_t max) {
  Constraint c(Kind::kIntegerList);
  c.min_ = min;
  c.max_ = max;
  return c;
}

Constraint Constraint::or_word(std::string w) const {
  Constraint c = *this;
  c.extra_words_.push_back(std::move(w));
  return c;
}

std::string Constraint::expected() const {
  std::string s;
  const auto integers = [&](const char* noun) {
    return max_ == kNoMax ? std::string(noun) + " >= " + std::to_string(min_)
                          : std::string(noun) + " from " + std::to_string(min_) + " to " + std::to_string(max_);
  };
  switch (kind_) {
    case Kind::kInteger: s = integers("an integer"); break;
    case Kind::kNumber:
      if (std::isinf(hi_))
        s = std::string("a finite number ") + (lo_open_ ? "> " : ">= ") + number_text(lo_);
      else
        s = std::string("a number in ") + (lo_open_ ? "(" : "[") + number_text(lo_) + ", " +
            number_text(hi_) + (hi_open_ ? ")" : "]");
      break;
    case Kind::kBoolean: s = "true or false"; break;
    case Kind::kWord: s = words_.size() == 1 ? words_[0] : "one of " + quoted_list(words_, ", "); break;
    case Kind::kText: s = non_empty_ ? "a non-empty path" : "any text"; break;
    case Kind::kPattern: s = description_; break;
    case Kind::kIntegerList: s = integers("integers") + ", separated by commas"; break;
  }
  for (const auto& w : extra_words_) s += " or \"" + w + "\"";
  return s;
}

bool Constraint::is_extra_word(const json& v) const {
  if (!v.is_string()) return false;
  for (const auto& w : extra_words_)
    if (v.get<std::string>() == w) return true;
  return false;
}

bool Constraint::in_range(const json& v) const {
  switch (kind_) {
    case Kind::kInteger: {
      if (!v.is_number_integer()) return false;
      // nlohmann::json keeps non-negative integers unsigned: beyond int64 is out of range.
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(kNoMax)) return false;
      const int64_t x = v.get<int64_t>();
      return x >= min_ && x <= max_;
    }
    case Kind::kNumber: {
      if (!v.is_number()) return false;
      const double x = v.get<double>();
      return std::isfinite(x) && (lo_open_ ? x > lo_ : x >= lo_) && (hi_open_ ? x < hi_ : x <= hi_);
    }
    case Kind::kBoolean: return v.is_boolean();
    case Kind::kWord:
      if (!v.is_string()) return false;
      for (const auto& w : words_)
        if (v.get<std::string>() == w) return true;
      return false;
    case Kind::kText: return v.is_string() && (!non_empty_ || !v.get<std::string>().empty());
    case Kind::kPattern: return v.is_string() && test_(v.get<std::string>());
    case Kind::kIntegerList:
      if (!v.is_array() || v.empty()) return false;
      for (const auto& x : v)
        if (!integer(min_, max_).in_range(x)) return false;
      return true;
  }
  return false;
}

bool Constraint::allows(const json& value) const { return is_extra_word(value) || in_range(value); }

json Constraint::parse_text(const std::string& text) const {
  if (is_extra_word(json(text))) return text;
  switch (kind_) {
    case Kind::kInteger: {
      int64_t x = 0;
      return parse_integer(text, &x) ? json(x) : json();
    }
    case Kind::kNumber: {
      double x = 0;
      // json cannot hold NaN or infinity; they are refused as not finite below.
      return parse_number(text, &x) && std::isfinite(x) ? json(x) : json();
    }
    case Kind::kIntegerList: {
      json list = json::array();
      std::stringstream in(text);
      std::string item;
      while (std::getline(in, item, ',')) {
        int64_t x = 0;
        if (!parse_integer(item, &x)) return json();
        list.push_back(x);
      }
      if (!text.empty() && text.back() == ',') return json();  // "1,8," has an empty item
      return list;
    }
    case Kind::kWord:
    case Kind::kText:
    case Kind::kPattern: return text;
    case Kind::kBoolean: return json();  // a switch: it takes no text
  }
  return json();
}

json Constraint::from_text(const std::string& text, const std::string& name) const {
  json v = parse_text(text);
  if (v.is_null() || !allows(v)) {
    const std::string why = why_not_ && v.is_string() ? why_not_(v.get<std::string>()) : "";
    throw UsageError(name + " " + (text.empty() ? "\"\"" : text) + ": expected " + expected() +
                     (why.empty() ? "" : " (" + why + ")"));
  }
  return v;
}

}  // namespace crsm
