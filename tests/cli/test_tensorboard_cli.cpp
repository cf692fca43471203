// A real run's TensorBoard event files, decoded by an outside reader of protobuf's wire
// format (`protoc --decode_raw`, Debian's protobuf-compiler) and read as TensorBoard reads
// a directory: its files in name order, each SessionLog START after the first dropping
// what the earlier files hold from its step on. So read, they hold exactly the scalars of
// the run's metrics.jsonl, once each, through a resume too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

#include "cli_test_support.h"
#include "metrics/tfrecord.h"

namespace {

using namespace crsm::testing;

// What TensorBoard shows of a run: the value of each tag at each step.
using Scalars = std::map<std::pair<std::string, int64_t>, float>;

struct Event {
  int64_t step = 0;
  std::string file_version;
  bool session_start = false;
  std::vector<std::pair<std::string, float>> values;
};

// The data of every record of an event file, each masked CRC-32C checked.
std::vector<std::string> records_of(const fs::path& file) {
  const std::string bytes = read_file(file);
  std::vector<std::string> records;
  for (size_t at = 0; at + 12 <= bytes.size();) {
    uint64_t length = 0;
    uint32_t crc = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&crc, bytes.data() + at + 8, 4);
    EXPECT_EQ(crc, crsm::metrics::masked_crc32c(bytes.substr(at, 8))) << file << " at byte " << at;
    if (at + 16 + length > bytes.size()) {
      ADD_FAILURE() << file << ": a truncated record at byte " << at;
      break;
    }
    records.push_back(bytes.substr(at + 12, length));
    std::memcpy(&crc, bytes.data() + at + 12 + length, 4);
    EXPECT_EQ(crc, crsm::metrics::masked_crc32c(records.back())) << file << " at byte " << at;
    at += 16 + length;
  }
  return records;
}

float float_of_bits(const std::string& hex) {
  const auto bits = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
  float value = 0;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// protoc's text of one record ("1: 0x41d9...", "5 {", "  1 {", ...) read as an Event:
// field numbers nest by braces; fixed32 and fixed64 values come as hex bits.
Event decode(const std::string& record, const fs::path& scratch) {
  using Path = std::vector<std::string>;
  write_file(scratch, record);
  const auto r = run_command("protoc --decode_raw < " + scratch.string());
  EXPECT_EQ(r.status, 0) << r.output;
  Event event;
  Path path;
  std::string tag, bits;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    line.erase(0, line.find_first_not_of(' '));
    if (line == "}") {
      if (path == Path{"5", "1"}) event.values.emplace_back(tag, float_of_bits(bits));
      path.pop_back();
    } else if (line.back() == '{') {
      path.push_back(line.substr(0, line.find(' ')));
    } else {
      const size_t colon = line.find(':');
      Path at = path;
      at.push_back(line.substr(0, colon));
      const std::string value = line.substr(colon + 2);
      if (at == Path{"2"}) event.step = std::stoll(value);
      if (at == Path{"3"}) event.file_version = value;
      if (at == Path{"7", "1"}) event.session_start = value == "1";
      if (at == Path{"5", "1", "1"}) tag = value.substr(1, value.size() - 2);  // unquoted
      if (at == Path{"5", "1", "2"}) bits = value;
    }
  }
  return event;
}

// What TensorBoard does at a restart: the points from `step` on go.
void drop_from(Scalars& shown, int64_t step) {
  for (auto it = shown.begin(); it != shown.end();) it = it->first.second >= step ? shown.erase(it) : std::next(it);
}

// The directory's files in name order, as TensorBoard takes them, each opening with the
// file version and a SessionLog START.
Scalars tensorboard_view(const fs::path& dir, const fs::path& scratch) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  Scalars shown;
  bool started = false;
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    EXPECT_EQ(file.filename().string().rfind("events.out.tfevents.", 0), 0u);
    const auto records = records_of(file);
    EXPECT_GE(records.size(), 2u);
    for (size_t i = 0; i < records.size(); ++i) {
      const Event e = decode(records[i], scratch);
      EXPECT_EQ(e.file_version, i == 0 ? "\"brain.Event:2\"" : "") << "record " << i;
      EXPECT_EQ(e.session_start, i == 1) << "record " << i;
      if (e.session_start && started) drop_from(shown, e.step);
      started |= e.session_start;
      for (const auto& [tag, value] : e.values)
        EXPECT_TRUE(shown.emplace(std::pair{tag, e.step}, value).second) << tag << " twice at step " << e.step;
    }
  }
  return shown;
}

// What metrics.jsonl says TensorBoard should show: each number of a record (a list's by
// index) under "<split>/<key>" at its step, as float.
Scalars metrics_view(const fs::path& run) {
  Scalars expected;
  std::istringstream lines(read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const auto record = nlohmann::json::parse(line);
    const int64_t step = record["step"];
    const std::string prefix = record["split"].get<std::string>() + "/";
    for (const auto& [key, value] : record.items()) {
      if (key == "step") continue;
      if (value.is_number()) expected[{prefix + key, step}] = value.get<float>();
      if (!value.is_array()) continue;
      for (size_t i = 0; i < value.size(); ++i)
        expected[{prefix + key + "/" + std::to_string(i), step}] = value[i].get<float>();
    }
  }
  return expected;
}

void expect_same(const Scalars& shown, const Scalars& expected) {
  EXPECT_EQ(shown.size(), expected.size());
  for (const auto& [key, value] : expected) {
    const auto it = shown.find(key);
    if (it == shown.end()) {
      ADD_FAILURE() << key.first << " at step " << key.second << " is missing";
      continue;
    }
    EXPECT_EQ(it->second, value) << key.first << " at step " << key.second;
  }
}

class TensorBoard : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new TempDir("tensorboard_cli");
    const auto r = prepare_shakespeare_prefix(*work, 60000);
    ASSERT_EQ(r.status, 0) << r.output;
    ASSERT_EQ(run_command("protoc --version").status, 0)
        << "protoc is missing: scripts/install_deps.sh installs protobuf-compiler";
  }
  static void TearDownTestSuite() { delete work; }

  static std::string train_args(const std::string& run, const std::string& extra) {
    return "train --config " + source_path("configs/tiny.json") + " --data " + work->str("data") +
           " --checkpoint-dir " + work->str(run) +
           " --threads 1 --log-every 1 --eval-every 3 --eval-batches 1 --save-every 3 --keep-last 0 " + extra;
  }

  static TempDir* work;
};
TempDir* TensorBoard::work = nullptr;

// Stage 4 (loss, value_loss, lr, grad_norm, tokens/s; validation loss and ppl), then the
// same run as if killed while saving step 6, its last checkpoint at step 3: resumed, it
// writes steps 4-6 again into a second file, and TensorBoard shows each step once.
TEST_F(TensorBoard, EventFilesHoldTheScalarsOfMetricsJsonlThroughAResume) {
  const auto r = run_command(crsm_train(train_args("run", "--max-steps 6")));
  ASSERT_EQ(r.status, 0) << r.output;
  const fs::path run = work->path() / "run";
  const Scalars shown = tensorboard_view(run / "tensorboard", work->path() / "record.bin");
  EXPECT_TRUE(shown.count({"train/value_loss", 6})) << "stage 4 logs its value loss";
  EXPECT_TRUE(shown.count({"val/ppl", 3}));
  expect_same(shown, metrics_view(run));

  const fs::path killed = work->path() / "killed";
  fs::copy(run, killed, fs::copy_options::recursive);
  fs::remove_all(killed / "checkpoints" / "step_00000006");
  write_file(killed / "checkpoints" / "latest", "step_00000003\n");
  const auto resumed = run_command(crsm_train(train_args("killed", "--max-steps 6 --resume auto")));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  ASSERT_NE(resumed.output.find("at step 3"), std::string::npos) << resumed.output;
  EXPECT_EQ(std::distance(fs::directory_iterator(killed / "tensorboard"), fs::directory_iterator()), 2);
  expect_same(tensorboard_view(killed / "tensorboard", work->path() / "record.bin"), metrics_view(killed));
}

// distill writes through the same loop (its validation's per-layer lists as one tag per
// layer); --tensorboard-dir moves the files and --no-tensorboard writes none.
TEST_F(TensorBoard, DistillWritesThemTooAndTheFlagsMoveOrDropThem) {
  const auto backbone = run_command(crsm_train(train_args("backbone", "--max-steps 2 --no-value-loss")));
  ASSERT_EQ(backbone.status, 0) << backbone.output;
  const auto d = run_command(crsm_train(
      "distill --model-path " + work->str("backbone") + " --output-path " + work->str("dyn") + " --data " +
      work->str("data") + " --num-samples 300 --val-samples 100 --epochs 1 --batch-size 64 --log-every 1 --threads 1 " +
      "--tensorboard-dir " + work->str("dyn_tb")));
  ASSERT_EQ(d.status, 0) << d.output;
  EXPECT_FALSE(fs::exists(work->path() / "dyn" / "tensorboard"));
  const Scalars shown = tensorboard_view(work->path() / "dyn_tb", work->path() / "record.bin");
  EXPECT_TRUE(shown.count({"train/transitions_per_s", 1}));
  EXPECT_TRUE(std::any_of(shown.begin(), shown.end(), [](const auto& s) { return s.first.first == "val/r2/1"; }))
      << "layer 1's R² at the end of the epoch";
  expect_same(shown, metrics_view(work->path() / "dyn"));

  const auto quiet = run_command(crsm_train(train_args("quiet", "--max-steps 1 --no-value-loss --no-tensorboard")));
  ASSERT_EQ(quiet.status, 0) << quiet.output;
  EXPECT_TRUE(fs::exists(work->path() / "quiet" / "metrics.jsonl"));
  EXPECT_FALSE(fs::exists(work->path() / "quiet" / "tensorboard"));
}

}  // namespace
