#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../support/file_size_limit.h"
#include "../support/scratch_dir.h"
#include "base/atomic_file.h"
#include "base/error.h"
#include "base/file_read.h"

namespace {

namespace fs = std::filesystem;
using crsm::FileError;
using crsm::base::AtomicFile;
using crsm::base::for_each_line;
using crsm::base::read_file;
using crsm::base::read_json_file;
using crsm::base::write_file_atomically;
using crsm::testing::names_in;

class AtomicFileTest : public crsm::testing::ScratchDirTest {
 protected:
  std::string path(const std::string& name) const { return (dir / name).string(); }

  static std::string contents(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  template <typename Fn>
  static std::string error_of(Fn fn) {
    try {
      fn();
    } catch (const FileError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected FileError";
    return "";
  }
};

TEST_F(AtomicFileTest, WritesANewFileAndReplacesAnOldOne) {
  write_file_atomically(path("a.txt"), "first");
  EXPECT_EQ(contents(path("a.txt")), "first");
  write_file_atomically(path("a.txt"), "second, longer");
  EXPECT_EQ(contents(path("a.txt")), "second, longer");
  EXPECT_EQ(names_in(dir), std::set<std::string>{"a.txt"});
}

TEST_F(AtomicFileTest, NothingChangesUntilCommit) {
  write_file_atomically(path("a.txt"), "old");
  {
    AtomicFile file(path("a.txt"));
    file.write("new contents");
    EXPECT_EQ(contents(path("a.txt")), "old") << "the target is untouched before commit()";
  }
  // Destroyed without commit(): the old file stands and the temporary is gone.
  EXPECT_EQ(contents(path("a.txt")), "old");
  EXPECT_EQ(names_in(dir), std::set<std::string>{"a.txt"});
}

TEST_F(AtomicFileTest, AWriteThatFailsHalfWayLeavesTheOldFileAndNoTemporary) {
  write_file_atomically(path("a.txt"), "old");
  {
    crsm::testing::FileSizeLimit limit(1000);
    const std::string message = error_of([&] { write_file_atomically(path("a.txt"), std::string(5000, 'x')); });
    EXPECT_NE(message.find(path("a.txt")), std::string::npos) << message;
    EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  }
  EXPECT_EQ(contents(path("a.txt")), "old");
  EXPECT_EQ(names_in(dir), std::set<std::string>{"a.txt"});
}

TEST_F(AtomicFileTest, AMissingDirectoryIsNamed) {
  const std::string p = path("no/such/dir/a.txt");
  const std::string message = error_of([&] { write_file_atomically(p, "x"); });
  EXPECT_NE(message.find(p), std::string::npos) << message;
}

TEST_F(AtomicFileTest, WritesBesideEachOtherDoNotCollide) {
  AtomicFile a(path("x.txt")), b(path("x.txt"));
  a.write("from a");
  b.write("from b");
  a.commit();
  b.commit();
  EXPECT_EQ(contents(path("x.txt")), "from b");
  EXPECT_EQ(names_in(dir), std::set<std::string>{"x.txt"});
}

TEST_F(AtomicFileTest, ReadFileNamesWhatIsWrong) {
  write_file_atomically(path("a.txt"), std::string("bytes\0and more", 14));
  EXPECT_EQ(read_file(path("a.txt")), std::string("bytes\0and more", 14));
  EXPECT_NE(error_of([&] { read_file(path("missing.txt")); }).find("missing.txt: cannot be opened"), std::string::npos);
  fs::create_directory(dir / "sub");
  EXPECT_NE(error_of([&] { read_file(path("sub")); }).find("a directory"), std::string::npos);
  write_file_atomically(path("bad.json"), "{\"a\": ");
  const std::string message = error_of([&] { read_json_file(path("bad.json")); });
  EXPECT_NE(message.find(path("bad.json") + ": malformed JSON"), std::string::npos) << message;
  write_file_atomically(path("good.json"), "{\"a\": 3}");
  EXPECT_EQ(read_json_file(path("good.json"))["a"], 3);
}

// Lines are streamed until the reader has enough, across buffer boundaries, with a last
// line that has no '\n'.
TEST_F(AtomicFileTest, LinesAreReadOnlyAsFarAsNeeded) {
  std::string text;
  for (int i = 1; i <= 300000; ++i) text += "line " + std::to_string(i) + "\n";
  write_file_atomically(path("lines.txt"), text + "last");
  std::vector<std::string> seen;
  for_each_line(path("lines.txt"), [&](const std::string& line, int64_t n) {
    seen.push_back(line);
    return n < 3;
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"line 1", "line 2", "line 3"}));
  int64_t count = 0;
  std::string last;
  for_each_line(path("lines.txt"), [&](const std::string& line, int64_t n) {
    count = n;
    last = line;
    if (n == 123456) EXPECT_EQ(line, "line 123456");
    return true;
  });
  EXPECT_EQ(count, 300001);
  EXPECT_EQ(last, "last");
  EXPECT_NE(error_of([&] { for_each_line(path("missing.txt"), [](const std::string&, int64_t) { return true; }); })
                .find("missing.txt: cannot be opened"),
            std::string::npos);
}

}  // namespace
