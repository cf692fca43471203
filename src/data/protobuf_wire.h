#pragma once

// A bounds check of protobuf's wire format, run on a SentencePiece model before
// libsentencepiece parses it. Protobuf trusts the length a string field claims and
// reserves that much memory (up to 50 MB) before it finds the bytes are not there, so
// a damaged 20 KB model could make it allocate far more than the file holds. This walk
// refuses any field whose claimed length runs past the end of the message around it.

#include <map>
#include <string>
#include <string_view>

namespace crsm::data {

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

}  // namespace crsm::data
