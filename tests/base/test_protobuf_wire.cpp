// Protobuf's wire format: the writer gives the bytes protobuf's own encoding documentation
// gives, and the bounds check refuses a field that claims more bytes than remain.
#include "base/protobuf_wire.h"

#include <gtest/gtest.h>

namespace crsm::base {
namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

// The examples of protobuf's encoding guide: field 1 = 150, field 2 = "testing".
TEST(ProtobufWire, WriterEncodesTheGuidesExamples) {
  EXPECT_EQ(WireWriter().varint(1, 150).data(), bytes({0x08, 0x96, 0x01}));
  EXPECT_EQ(WireWriter().bytes(2, "testing").data(), bytes({0x12, 0x07}) + "testing");
  // A negative int64 takes ten bytes (two's complement); a large field number a longer key.
  EXPECT_EQ(WireWriter().varint(1, static_cast<uint64_t>(int64_t{-1})).data(),
            bytes({0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
  EXPECT_EQ(WireWriter().varint(16, 0).data(), bytes({0x80, 0x01, 0x00}));
}

TEST(ProtobufWire, WriterEncodesDoublesAndFloatsLittleEndian) {
  EXPECT_EQ(WireWriter().fixed64(1, 1.0).data(), bytes({0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}));
  EXPECT_EQ(WireWriter().fixed32(2, -2.5f).data(), bytes({0x15, 0x00, 0x00, 0x20, 0xc0}));
}

// A message nested twice, as TensorBoard's Event > Summary > Value: the walk finds every
// field within its message, and a byte cut off is found.
TEST(ProtobufWire, NestedMessagesPassTheBoundsCheck) {
  const std::string value = WireWriter().bytes(1, "train/loss").fixed32(2, 1.5f).data();
  const std::string summary = WireWriter().bytes(1, value).bytes(1, value).data();
  const std::string event = WireWriter().fixed64(1, 1.7e9).varint(2, 40).bytes(5, summary).data();
  const WireSchema leaf;
  const WireSchema summary_schema{{{1, &leaf}}};
  const WireSchema event_schema{{{5, &summary_schema}}};
  EXPECT_EQ(wire_format_problem(event, event_schema), "");
  EXPECT_NE(wire_format_problem(event.substr(0, event.size() - 1), event_schema), "");
}

// Protobuf reserves what a string field claims before it checks the bytes are there:
// the walk refuses such a field first, whatever the depth.
TEST(ProtobufWire, AFieldClaimingMoreBytesThanRemainIsRefused) {
  const WireSchema leaf;
  const WireSchema schema{{{1, &leaf}}};
  EXPECT_EQ(wire_format_problem(std::string("\x0a\x03\x0a\x01x", 5), schema), "");
  // Field 1 (a message) holds field 1 (a string) claiming 1000000 bytes: 0xc0 0x84 0x3d.
  const std::string nested("\x0a\x05\x0a\xc0\x84\x3d" "x", 7);
  EXPECT_NE(wire_format_problem(nested, schema).find("claims 1000000 bytes"), std::string::npos)
      << wire_format_problem(nested, schema);
  EXPECT_NE(wire_format_problem(std::string("\x0a\x7f", 2), schema).find("claims 127 bytes"), std::string::npos);
  EXPECT_NE(wire_format_problem(std::string("\x0b\x0a", 2), schema), "") << "an unclosed group";
  EXPECT_NE(wire_format_problem(std::string("\x0f", 1), schema), "") << "wire type 7";
  EXPECT_NE(wire_format_problem(std::string("\x08\xff", 2), schema), "") << "a truncated varint";
}

}  // namespace
}  // namespace crsm::base
