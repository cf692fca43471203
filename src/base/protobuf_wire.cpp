#include "base/protobuf_wire.h"

#include <cstring>

namespace crsm::base {
namespace {

constexpr int kMaxDepth = 100;  // protobuf's own recursion limit

class Walker {
 public:
  explicit Walker(std::string_view bytes) : bytes_(bytes) {}

  // Reads the fields of one message from pos_ to `end` (or to the end-group tag of
  // `group`, when it is > 0).
  std::string message(size_t end, const WireSchema* schema, int depth, int group) {
    if (depth > kMaxDepth) return "messages nested deeper than " + std::to_string(kMaxDepth);
    while (pos_ < end) {
      const size_t at = pos_;
      uint64_t tag = 0;
      if (!varint(end, &tag)) return "a truncated field tag at byte " + std::to_string(at);
      const uint64_t field = tag >> 3;
      const int wire = static_cast<int>(tag & 7);
      if (field == 0 || field > 0x1fffffff) return "an invalid field number at byte " + std::to_string(at);
      const std::string where = "field " + std::to_string(field) + " at byte " + std::to_string(at);
      if (wire == 4) {
        if (group == static_cast<int>(field)) return "";
        return where + " ends a group that is not open";
      }
      std::string problem = value(wire, end, where, schema ? nested(schema, field) : nullptr, depth,
                                  static_cast<int>(field));
      if (!problem.empty()) return problem;
    }
    return group > 0 ? "group " + std::to_string(group) + " is never closed" : "";
  }

 private:
  static const WireSchema* nested(const WireSchema* schema, uint64_t field) {
    const auto it = schema->messages.find(static_cast<int>(field));
    return it == schema->messages.end() ? nullptr : it->second;
  }

  std::string value(int wire, size_t end, const std::string& where, const WireSchema* schema, int depth,
                    int field) {
    uint64_t n = 0;
    switch (wire) {
      case 0: return varint(end, &n) ? "" : where + ": a truncated varint";
      case 1: return skip(8, end) ? "" : where + ": a truncated 8-byte value";
      case 5: return skip(4, end) ? "" : where + ": a truncated 4-byte value";
      case 2: {
        if (!varint(end, &n)) return where + ": a truncated length";
        if (n > end - pos_)
          return where + " claims " + std::to_string(n) + " bytes, " + std::to_string(end - pos_) + " remain";
        const size_t stop = pos_ + static_cast<size_t>(n);
        if (!schema) {
          pos_ = stop;
          return "";
        }
        return message(stop, schema, depth + 1, 0);
      }
      case 3: return message(end, schema, depth + 1, field);  // a group: fields until its end tag
      default: return where + ": unknown wire type " + std::to_string(wire);
    }
  }

  bool varint(size_t end, uint64_t* out) {
    *out = 0;
    for (int shift = 0; shift < 64 && pos_ < end; shift += 7) {
      const auto byte = static_cast<uint8_t>(bytes_[pos_++]);
      *out |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return true;
    }
    return false;
  }

  bool skip(size_t n, size_t end) {
    if (n > end - pos_) return false;
    pos_ += n;
    return true;
  }

  std::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace

std::string wire_format_problem(std::string_view bytes, const WireSchema& schema) {
  return Walker(bytes).message(bytes.size(), &schema, 0, 0);
}

WireWriter& WireWriter::varint(int field, uint64_t value) {
  key(field, 0);
  raw_varint(value);
  return *this;
}

WireWriter& WireWriter::fixed64(int field, double value) {
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  key(field, 1);
  little_endian(bits, 8);
  return *this;
}

WireWriter& WireWriter::fixed32(int field, float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  key(field, 5);
  little_endian(bits, 4);
  return *this;
}

WireWriter& WireWriter::bytes(int field, std::string_view value) {
  key(field, 2);
  raw_varint(value.size());
  data_.append(value);
  return *this;
}

// A field's key: its number and how its value is encoded (protobuf's wire type).
void WireWriter::key(int field, int wire_type) {
  raw_varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}

void WireWriter::raw_varint(uint64_t value) {
  for (; value >= 0x80; value >>= 7) data_.push_back(static_cast<char>((value & 0x7f) | 0x80));
  data_.push_back(static_cast<char>(value));
}

void WireWriter::little_endian(uint64_t bits, int bytes) {
  for (int i = 0; i < bytes; ++i) data_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

}  // namespace crsm::base
