#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "../support/scratch_dir.h"
#include "base/error.h"
#include "base/new_directories.h"

namespace {

namespace fs = std::filesystem;
using crsm::base::NewDirectories;

class NewDirectoriesTest : public crsm::testing::ScratchDirTest {};

TEST_F(NewDirectoriesTest, ACommandThatFailsTakesBackTheEmptyDirectoriesItMade) {
  fs::create_directory(dir / "existing");
  {
    NewDirectories created;
    created.create((dir / "existing/a/b/c").string());
    EXPECT_TRUE(fs::is_directory(dir / "existing/a/b/c"));
  }
  EXPECT_FALSE(fs::exists(dir / "existing/a"));
  EXPECT_TRUE(fs::is_directory(dir / "existing")) << "what was there before stays";
}

TEST_F(NewDirectoriesTest, KeepsWhatHoldsAFileAndEverythingAfterKeep) {
  {
    NewDirectories created;
    created.create((dir / "a/b/c").string());
    std::ofstream(dir / "a/b/file.txt") << "work";
  }
  EXPECT_TRUE(fs::exists(dir / "a/b/file.txt"));
  EXPECT_FALSE(fs::exists(dir / "a/b/c")) << "the empty leaf goes";
  {
    NewDirectories created;
    created.create((dir / "x/y").string());
    created.keep();
  }
  EXPECT_TRUE(fs::is_directory(dir / "x/y"));
}

TEST_F(NewDirectoriesTest, AFileInTheWayIsNamed) {
  std::ofstream(dir / "plain") << "x";
  NewDirectories created;
  try {
    created.create((dir / "plain/sub").string());
    FAIL() << "expected FileError";
  } catch (const crsm::FileError& e) {
    EXPECT_NE(std::string(e.what()).find("plain"), std::string::npos) << e.what();
  }
  try {
    created.create((dir / "plain").string());
    FAIL() << "expected FileError";
  } catch (const crsm::FileError& e) {
    EXPECT_NE(std::string(e.what()).find("not a directory"), std::string::npos) << e.what();
  }
}

}  // namespace
