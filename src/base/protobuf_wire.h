#pragma once

// Protobuf's wire format both ways, for the few messages we share with other tools
// without linking protobuf: a writer of fields (TensorBoard's event files,
// metrics/tensorboard_writer.h) and a bounds check of a message before a library parses
// it (a SentencePiece model, data/sentencepiece_tokenizer.cpp). The check exists because
// protobuf trusts the length a string field claims and reserves that much memory (up to
// 50 MB) before it finds the bytes are not there, so a damaged 20 KB model could make it
// allocate far more than the file holds: the walk refuses any field whose claimed length
// runs past the end of the message around it.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace crsm::base {

// The fields of one message, appended in the order they are added; a nested message is
// written by a writer of its own and added as bytes. Field numbers are our constants
// (1 to 2^29 - 1), so they are not checked. Little-endian on every host.
class WireWriter {
 public:
  WireWriter& varint(int field, uint64_t value);         // int64 (two's complement), uint64, bool, enum
  WireWriter& fixed64(int field, double value);          // double
  WireWriter& fixed32(int field, float value);           // float
  WireWriter& bytes(int field, std::string_view value);  // string, bytes, a message

  const std::string& data() const { return data_; }

 private:
  void key(int field, int wire_type);
  void raw_varint(uint64_t value);
  void little_endian(uint64_t bits, int bytes);
  std::string data_;
};

// The fields of a message that hold messages themselves (by field number), so the walk
// descends into them as protobuf's parser would; every other length-delimited field is
// taken as bytes.
struct WireSchema {
  std::map<int, const WireSchema*> messages;
};

// "" when every field of `bytes`, read as a message of `schema`, lies within its
// message; otherwise what is wrong and where ("field 1 at byte 1746 claims 1212182
// bytes, 20210 remain").
std::string wire_format_problem(std::string_view bytes, const WireSchema& schema);

}  // namespace crsm::base
