// TensorBoard's event files: CRC-32C against published vectors, TFRecord's mask and
// framing byte for byte, and the files a MetricsWriter leaves (their names, their first
// records, every record well-formed). tests/cli/test_tensorboard_cli.cpp decodes a real
// run's files with protoc.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "../support/scratch_dir.h"
#include "base/error.h"
#include "base/protobuf_wire.h"
#include "metrics/metrics_writer.h"
#include "metrics/tensorboard_writer.h"
#include "metrics/tfrecord.h"

namespace crsm::metrics {
namespace {

namespace fs = std::filesystem;

std::string bytes_of(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

// RFC 3720 (iSCSI) appendix B.4, and the check value of the CRC catalogue.
TEST(TfRecord, Crc32cMatchesThePublishedVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(""), 0u);
}

// ((crc >> 15) | (crc << 17)) + 0xa282ead8, worked by hand for 0xE3069283.
TEST(TfRecord, MaskRotatesRightBy15AndAddsTheConstant) {
  EXPECT_EQ(masked_crc32c("123456789"), 0xC78AB0E5u);
  EXPECT_EQ(masked_crc32c(""), 0xa282ead8u);
}

// uint64 length, masked CRC of the length's 8 bytes, the data, masked CRC of the data.
TEST(TfRecord, FramesARecordAsTensorFlowDoes) {
  const std::string record = tfrecord("abc");
  EXPECT_EQ(record, bytes_of({0x03, 0, 0, 0, 0, 0, 0, 0,  // length 3
                              0xb0, 0x99, 0x49, 0x0e,  // its masked CRC
                              'a', 'b', 'c',           // the data
                              0x6e, 0x57, 0xf1, 0x21}));  // its masked CRC
  uint32_t length_crc = 0, data_crc = 0;
  std::memcpy(&length_crc, record.data() + 8, 4);
  std::memcpy(&data_crc, record.data() + 15, 4);
  EXPECT_EQ(length_crc, masked_crc32c(record.substr(0, 8)));
  EXPECT_EQ(data_crc, masked_crc32c("abc"));
  EXPECT_EQ(tfrecord("").size(), 16u);
}

// The data of every record of an event file, each CRC checked.
std::vector<std::string> read_records(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  const std::string bytes = s.str();
  std::vector<std::string> records;
  for (size_t at = 0; at < bytes.size();) {
    uint64_t length = 0;
    uint32_t crc = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&crc, bytes.data() + at + 8, 4);
    EXPECT_EQ(crc, masked_crc32c(bytes.substr(at, 8))) << file << " at byte " << at;
    records.push_back(bytes.substr(at + 12, length));
    std::memcpy(&crc, bytes.data() + at + 12 + length, 4);
    EXPECT_EQ(crc, masked_crc32c(records.back())) << file << " at byte " << at;
    at += 16 + length;
  }
  return records;
}

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

// Event > Summary > Value and Event > SessionLog, as tensorboard_writer.h lists them.
const base::WireSchema& event_schema() {
  static const base::WireSchema leaf;
  static const base::WireSchema summary{{{1, &leaf}}};
  static const base::WireSchema event{{{5, &summary}, {7, &leaf}}};
  return event;
}

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// A start resumed at step 10 opens a second file, whose SessionLog START at step 11 makes
// TensorBoard drop what the first file holds from step 11 on.
TEST(TensorBoardWriter, EachStartWritesANewFileThatOpensWithTheVersionAndASessionStart) {
  const testing::ScratchDir dir("tensorboard");
  const std::string tb = dir.str("tb");
  { MetricsWriter(dir.str(), -1, tb).write({{"step", 10}, {"split", "train"}, {"loss", 2.5}, {"lr", 1e-3}}); }
  { MetricsWriter(dir.str(), 10, tb).write({{"step", 20}, {"split", "val"}, {"loss", 2.25}, {"r2", {0.5, 0.25}}}); }
  const auto files = event_files(tb);
  ASSERT_EQ(files.size(), 2u);
  const std::vector<int> first_steps = {0, 11};
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string name = files[i].filename().string();
    EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
    EXPECT_NE(name.find("." + host_name()), std::string::npos) << name;
    const auto records = read_records(files[i]);
    ASSERT_EQ(records.size(), 3u) << name;
    for (const auto& r : records) EXPECT_EQ(base::wire_format_problem(r, event_schema()), "") << name;
    // Past the wall time (a key and 8 bytes): the version; then the step and a SessionLog
    // (field 7) of status START (1).
    EXPECT_EQ(records[0].substr(9), base::WireWriter().bytes(3, "brain.Event:2").data());
    EXPECT_EQ(records[1].substr(9), bytes_of({0x10, first_steps[i], 0x3a, 0x02, 0x08, 0x01})) << name;
  }
  const auto first = read_records(files[0]), second = read_records(files[1]);
  EXPECT_NE(first[2].find("train/loss"), std::string::npos);
  EXPECT_NE(first[2].find("train/lr"), std::string::npos);
  EXPECT_EQ(first[2].find("step"), std::string::npos) << "the step is the event's, not a scalar";
  EXPECT_NE(second[2].find("val/r2/1"), std::string::npos);
}

// Readers take a directory's files in name order: a start in a second whose name is
// taken comes after it.
TEST(TensorBoardWriter, AStartInASecondAlreadyTakenGetsTheNextName) {
  const testing::ScratchDir dir("tensorboard_same_second");
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  for (int64_t s = now.count(); s < now.count() + 3; ++s)
    std::ofstream(dir.path() / ("events.out.tfevents." + std::to_string(s) + "." + host_name()));
  const TensorBoardWriter writer(dir.str(), 0);
  const std::string name = fs::path(writer.path()).filename().string();
  const std::string suffix = "." + host_name() + ".1";
  ASSERT_GT(name.size(), suffix.size());
  EXPECT_EQ(name.substr(name.size() - suffix.size()), suffix) << name;
}

TEST(TensorBoardWriter, NoDirectoryNoEventFiles) {
  const testing::ScratchDir dir("no_tensorboard");
  MetricsWriter(dir.str(), -1, "").write({{"step", 1}, {"split", "train"}, {"loss", 1.0}});
  EXPECT_EQ(event_files(dir.path()).size(), 1u) << "metrics.jsonl alone";
}

TEST(TensorBoardWriter, ADirectoryThatCannotBeMadeIsNamed) {
  const testing::ScratchDir dir("tensorboard_file");
  std::ofstream(dir.path() / "a_file") << "x";
  try {
    TensorBoardWriter((dir.path() / "a_file" / "tb").string(), 0);
    FAIL() << "no error";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("a_file/tb: cannot create"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace crsm::metrics
