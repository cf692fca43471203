#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "../support/scratch_dir.h"
#include "data/data_error.h"

namespace crsm::testing {

// A fresh directory per test (`dir`), removed afterwards.
class DataTest : public ScratchDirTest {
 protected:

  // Writes `text` to dir/name and returns the path.
  std::string write_file(const std::string& name, const std::string& text) const {
    const auto path = (dir / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::string path(const std::string& name) const { return (dir / name).string(); }
};

// Runs fn, expects one of our errors (crsm::Error: DataError, FileError), and returns its message.
template <typename Fn>
std::string data_error_of(Fn fn) {
  try {
    fn();
  } catch (const crsm::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected crsm::Error";
  return "";
}

// Deterministic English-like text: `lines` lines of words drawn by a fixed LCG, enough
// variety for SentencePiece to learn a few hundred pieces.
inline std::string generated_corpus(int lines, uint32_t seed) {
  static const char* words[] = {"the",   "quick", "brown",  "fox",    "jumps", "over",  "lazy",
                                "dog",   "data",  "model",  "token",  "shard", "train", "value",
                                "night", "light", "stream", "window", "river", "stone", "apple",
                                "grape", "kings", "queens", "castle", "horse", "sword", "crown"};
  constexpr uint32_t n_words = sizeof(words) / sizeof(words[0]);
  std::string text;
  uint32_t x = seed;
  for (int l = 0; l < lines; ++l) {
    const int len = 5 + l % 7;
    for (int w = 0; w < len; ++w) {
      x = x * 1664525u + 1013904223u;
      text += (w ? " " : "") + std::string(words[(x >> 16) % n_words]);
    }
    text += l % 5 == 4 ? ".\n\n" : ",\n";
  }
  return text;
}

}  // namespace crsm::testing
