#pragma once

// Damaged copies of a valid file, for the readers' mutation tests: truncations, bit
// flips, overwritten bytes, splices of the file's own pieces (or a donor's), insertions,
// deletions and, for text, a JSON token replaced by an awkward value. Deterministic: the
// same seed and index give the same mutant, so a failure names one to reproduce.

#include <cstdint>
#include <random>
#include <regex>
#include <string>
#include <vector>

namespace crsm::testing {

struct Mutant {
  std::string bytes;
  std::string how;  // "flip 3 bits at 120", for messages
};

class Mutator {
 public:
  Mutator(std::string valid, uint64_t seed, std::string donor = "")
      : valid_(std::move(valid)), donor_(donor.empty() ? valid_ : std::move(donor)), seed_(seed) {
    // Where the JSON values are: numbers, strings, literals.
    static const std::regex token(R"(-?[0-9][0-9.eE+-]*|"[^"\\]*"|true|false|null)");
    for (auto it = std::sregex_iterator(valid_.begin(), valid_.end(), token); it != std::sregex_iterator(); ++it)
      tokens_.emplace_back(static_cast<size_t>(it->position()), static_cast<size_t>(it->length()));
  }

  Mutant make(uint64_t index) const {
    std::mt19937_64 rng(seed_ * 1000003u + index);
    std::string b = valid_;
    const size_t n = b.size();
    auto at = [&](size_t limit) { return limit == 0 ? size_t{0} : static_cast<size_t>(rng() % limit); };
    switch (rng() % (tokens_.empty() ? 6 : 8)) {
      case 0: {
        // Short files are truncated everywhere; long ones near their start as often as elsewhere.
        const size_t len = rng() % 2 ? at(n) : at(std::min<size_t>(n, 64));
        return {b.substr(0, len), "truncate to " + std::to_string(len)};
      }
      case 1: {
        const int flips = 1 + static_cast<int>(rng() % 8);
        std::string where;
        for (int i = 0; i < flips && n > 0; ++i) {
          const size_t pos = at(n);
          b[pos] = static_cast<char>(b[pos] ^ (1 << (rng() % 8)));
          where += " " + std::to_string(pos);
        }
        return {b, "flip bits at" + where};
      }
      case 2: {
        static const unsigned char awkward[] = {0, 0xff, 0x7f, 0x80, '9', '-', '"', '{', '[', ',', '.', 'e', 'n'};
        const size_t pos = at(n);
        if (n > 0) b[pos] = static_cast<char>(awkward[rng() % sizeof awkward]);
        return {b, "overwrite byte " + std::to_string(pos)};
      }
      case 3: {
        const size_t len = 1 + at(std::min<size_t>(donor_.size(), 256)), from = at(donor_.size() - len + 1);
        const size_t to = at(n);
        b.replace(to, std::min(len, n - to), donor_.substr(from, len));
        return {b, "splice " + std::to_string(len) + " bytes from " + std::to_string(from) + " to " + std::to_string(to)};
      }
      case 4: {
        const size_t pos = at(n + 1), len = 1 + at(64);
        std::string junk(len, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        b.insert(pos, junk);
        return {b, "insert " + std::to_string(len) + " bytes at " + std::to_string(pos)};
      }
      case 5: {
        const size_t pos = at(n), len = 1 + at(std::min<size_t>(n - pos, 64));
        b.erase(pos, len);
        return {b, "delete " + std::to_string(len) + " bytes at " + std::to_string(pos)};
      }
      default: {
        static const char* values[] = {"-1", "0", "2.5", "1e308", "-1e308", "99999999999999999999", "9223372036854775807",
                                       "18446744073709551615", "1099511627776", "null", "true", "\"\"", "\"x\"",
                                       "[]", "{}", "[1,2]", "\"../../etc/passwd\"", "\"rank00001.safetensors\""};
        const auto& [pos, len] = tokens_[at(tokens_.size())];
        const char* value = values[rng() % (sizeof values / sizeof values[0])];
        b.replace(pos, len, value);
        return {b, "replace the token at " + std::to_string(pos) + " by " + value};
      }
    }
  }

 private:
  std::string valid_, donor_;
  uint64_t seed_;
  std::vector<std::pair<size_t, size_t>> tokens_;
};

}  // namespace crsm::testing
