#include "metrics/tensorboard_writer.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/protobuf_wire.h"
#include "metrics/tfrecord.h"

namespace crsm::metrics {
namespace {

namespace fs = std::filesystem;

// Field numbers, by message.
constexpr int kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5, kSessionLog = 7;  // Event
constexpr int kValue = 1;                                                                  // Summary
constexpr int kTag = 1, kSimpleValue = 2;                                                  // Summary.Value
constexpr int kStatus = 1, kStart = 1;                                                     // SessionLog

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  return gethostname(name, sizeof name - 1) == 0 && name[0] ? name : "localhost";
}

// The first name of TensorFlow's pattern that no file in `dir` has.
std::string new_event_file(const fs::path& dir) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch());
  const std::string stem = "events.out.tfevents." + std::to_string(seconds.count()) + "." + host_name();
  std::string name = stem;
  for (int n = 1; fs::exists(dir / name); ++n) name = stem + "." + std::to_string(n);
  return (dir / name).string();
}

// A Summary.Value for every number under `value`, tagged as write() says.
void add_scalars(base::WireWriter& summary, const std::string& tag, const nlohmann::json& value) {
  if (value.is_number()) {
    summary.bytes(kValue, base::WireWriter().bytes(kTag, tag).fixed32(kSimpleValue, value.get<float>()).data());
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) add_scalars(summary, tag + "/" + std::to_string(i), value[i]);
  } else if (value.is_object()) {
    for (const auto& [key, item] : value.items()) add_scalars(summary, tag + "/" + key, item);
  }
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir, int64_t first_step) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw FileError(dir + ": cannot create the TensorBoard directory (" + ec.message() + ")");
  path_ = new_event_file(dir);
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw FileError(path_ + ": cannot open for writing");
  const double now = wall_time();
  append(base::WireWriter().fixed64(kWallTime, now).bytes(kFileVersion, "brain.Event:2").data());
  append(base::WireWriter()
             .fixed64(kWallTime, now)
             .varint(kStep, static_cast<uint64_t>(first_step))
             .bytes(kSessionLog, base::WireWriter().varint(kStatus, kStart).data())
             .data());
}

void TensorBoardWriter::write(const nlohmann::json& record) {
  const std::string split = record.at("split").get<std::string>();
  base::WireWriter summary;
  for (const auto& [key, value] : record.items())
    if (key != "step") add_scalars(summary, split + "/" + key, value);
  append(base::WireWriter()
             .fixed64(kWallTime, wall_time())
             .varint(kStep, static_cast<uint64_t>(record.at("step").get<int64_t>()))
             .bytes(kSummary, summary.data())
             .data());
}

void TensorBoardWriter::append(const std::string& event) {
  out_ << tfrecord(event);
  out_.flush();
}

}  // namespace crsm::metrics
