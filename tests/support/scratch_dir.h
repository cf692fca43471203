#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

namespace crsm::testing {

// A fresh directory under the system temp directory, unique to this process and tag
// (ctest runs test cases in parallel processes), removed with the object.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag)
      : path_(std::filesystem::temp_directory_path() /
              ("crsm_" + tag + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& child = "") const {
    return child.empty() ? path_.string() : (path_ / child).string();
  }

 private:
  std::filesystem::path path_;
};

// A fixture giving each test its own ScratchDir, named after the test, as `dir`.
class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    scratch_.emplace(std::string(info->test_suite_name()) + "_" + info->name());
    dir = scratch_->path();
  }
  void TearDown() override { scratch_.reset(); }

  std::filesystem::path dir;

 private:
  std::optional<ScratchDir> scratch_;
};

}  // namespace crsm::testing
