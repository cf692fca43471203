#include <gtest/gtest.h>

#include <limits>
#include <numeric>

#include <nlohmann/json.hpp>

#include "data/shard_writer.h"
#include "data/token_shards.h"
#include "data_test_util.h"

namespace {

namespace fs = std::filesystem;
using crsm::data::ShardInfo;
using crsm::data::ShardWriter;
using crsm::data::TokenDtype;
using crsm::data::TokenSplit;
using crsm::testing::data_error_of;

class DataTokenSplit : public crsm::testing::DataTest {
 protected:
  // Writes tokens 100, 101, ... into "train" shards of at most 5 tokens and an index.
  void write_train(int64_t count, int64_t vocab_size = 1000) {
    ShardWriter w(dir.string(), "train", TokenDtype::kUint16, 5);
    std::vector<int32_t> ids(count);
    std::iota(ids.begin(), ids.end(), 100);
    w.write(ids);
    write_index("uint16", vocab_size, w.finish());
  }

  void write_index(const std::string& dtype, int64_t vocab_size,
                   const std::vector<ShardInfo>& shards) {
    nlohmann::json list = nlohmann::json::array();
    int64_t total = 0;
    for (const auto& s : shards) {
      list.push_back({{"file", s.file}, {"tokens", s.tokens}});
      total += s.tokens;
    }
    const nlohmann::json index = {{"format_version", 1},
                                  {"dtype", dtype},
                                  {"vocab_size", vocab_size},
                                  {"splits", {{"train", {{"tokens", total}, {"shards", list}}}}}};
    write_file("index.json", index.dump());
  }
};

TEST_F(DataTokenSplit, ReadsAcrossShardBoundaries) {
  write_train(12);
  for (const char* f : {"train_000.bin", "train_001.bin", "train_002.bin"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  EXPECT_EQ(fs::file_size(dir / "train_002.bin"), 4u);

  auto split = TokenSplit::open(dir.string(), "train");
  EXPECT_EQ(split.size(), 12);
  EXPECT_EQ(split.vocab_size(), 1000);
  std::vector<int64_t> got(7);
  split.read(3, 7, got.data());  // shard 0 tail, all of shard 1, shard 2 head
  EXPECT_EQ(got, (std::vector<int64_t>{103, 104, 105, 106, 107, 108, 109}));
  split.read(11, 1, got.data());
  EXPECT_EQ(got[0], 111);

  const TokenSplit moved = std::move(split);
  moved.read(0, 2, got.data());
  EXPECT_EQ(got[1], 101);
  const std::string msg = data_error_of([&] { moved.read(8, 5, got.data()); });
  EXPECT_NE(msg.find("[8, 13)"), std::string::npos) << msg;
}

TEST_F(DataTokenSplit, ReadsLittleEndianUint32) {
  // 70000 = 0x00011170 and 7, little-endian.
  write_file("train_000.bin", std::string("\x70\x11\x01\x00\x07\x00\x00\x00", 8));
  write_index("uint32", 100000, {{"train_000.bin", 2}});
  std::vector<int64_t> got(2);
  TokenSplit::open(dir.string(), "train").read(0, 2, got.data());
  EXPECT_EQ(got, (std::vector<int64_t>{70000, 7}));
}

TEST_F(DataTokenSplit, DetectsDamagedShards) {
  write_train(4, 102);  // ids 100..103, two of them outside the vocabulary
  std::vector<int64_t> got(4);
  TokenSplit::open(dir.string(), "train").read(0, 2, got.data());
  const std::string id = data_error_of(
      [&] { TokenSplit::open(dir.string(), "train").read(0, 4, got.data()); });
  EXPECT_NE(id.find("token id 102"), std::string::npos) << id;

  write_train(12);
  fs::resize_file(dir / "train_001.bin", 7);
  const std::string msg = data_error_of([&] { TokenSplit::open(dir.string(), "train"); });
  EXPECT_NE(msg.find("train_001.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("7 bytes, index says 5 tokens (10 bytes)"), std::string::npos) << msg;

  fs::remove(dir / "train_001.bin");
  EXPECT_NE(data_error_of([&] { TokenSplit::open(dir.string(), "train"); }).find("train_001.bin"),
            std::string::npos);
}

TEST_F(DataTokenSplit, RejectsAMalformedIndex) {
  write_train(4);
  EXPECT_NE(data_error_of([&] { TokenSplit::open(dir.string(), "val"); }).find("\"val\""),
            std::string::npos);

  write_file("index.json", "{\"format_version\": 1,");
  const std::string msg = data_error_of([&] { TokenSplit::open(dir.string(), "train"); });
  EXPECT_NE(msg.find(path("index.json")), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed"), std::string::npos) << msg;

  write_index("int8", 1000, {{"train_000.bin", 4}});
  EXPECT_NE(data_error_of([&] { TokenSplit::open(dir.string(), "train"); }).find("dtype"),
            std::string::npos);
  write_index("uint16", 1000, {{"../train_000.bin", 4}});
  EXPECT_NE(data_error_of([&] { TokenSplit::open(dir.string(), "train"); }).find("file name"),
            std::string::npos);

  fs::remove(dir / "index.json");
  EXPECT_NE(data_error_of([&] { TokenSplit::open(dir.string(), "train"); }).find("index.json"),
            std::string::npos);
}

// A token count the shard format cannot have is refused before it is multiplied by the
// element size (2 * INT64_MAX overflowed; UndefinedBehaviorSanitizer caught it).
TEST_F(DataTokenSplit, RefusesTokenCountsNoShardCanHold) {
  write_train(4);
  write_index("uint16", 1000, {{"train_000.bin", std::numeric_limits<int64_t>::max()}});
  const std::string msg = data_error_of([&] { TokenSplit::open(dir.string(), "train"); });
  EXPECT_NE(msg.find("\"tokens\" must be an integer from 0 to 268435456"), std::string::npos) << msg;
}

}  // namespace
