#pragma once

// TensorBoard event files of a run's scalars, written without TensorFlow or protobuf: the
// records of metrics.jsonl (metrics_writer.h) as tensorflow.Event protos
// (base/protobuf_wire.h) in TFRecord framing (tfrecord.h), so that `tensorboard --logdir`
// draws a run as it draws DeepSpeed's, Megatron's or torchtitan's. The fields written
// (TensorFlow's event.proto and summary.proto):
//   Event       wall_time double 1, step int64 2, file_version string 3 ("brain.Event:2",
//               the first record), summary Summary 5, session_log SessionLog 7
//   Summary     value repeated Value 1;  Value: tag string 1, simple_value float 2
//   SessionLog  status enum 1 (START = 1)

#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace crsm::metrics {

class TensorBoardWriter {
 public:
  // Creates `dir` if needed and a new event file in it, named as TensorFlow names them,
  // events.out.tfevents.<unix seconds>.<host>, with .1, .2, ... added when an earlier start
  // took the name in the same second (readers take a directory's files in name order).
  // Its first records are the file version and a SessionLog START at `first_step`.
  // TensorBoard takes the first START in a directory as the run's beginning and each later
  // one as a restart, dropping what the earlier files hold from that step on (its Rust
  // loader drops a tag's points from the step of any point that does not come after
  // them): a resumed run, which writes again the steps after its checkpoint, is drawn
  // once. FileError naming the directory or file if it cannot be created.
  TensorBoardWriter(const std::string& dir, int64_t first_step);

  // One event at record["step"]: every number of the record as a scalar tagged
  // "<split>/<key>" ("train/loss", "val/ppl", with record["split"]), each number in a list
  // or object under "<split>/<key>/<index or name>" ("val/r2/0"); text and booleans are
  // left out. Flushed at once; like metrics.jsonl, a failed write does not stop the run.
  void write(const nlohmann::json& record);

  const std::string& path() const { return path_; }

 private:
  void append(const std::string& event);  // one serialized Event, framed
  std::string path_;
  std::ofstream out_;
};

}  // namespace crsm::metrics
