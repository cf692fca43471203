#pragma once

// TFRecord framing, the container of TensorBoard's event files. Each record is
//   uint64 length | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data
// all little-endian. Readers (TensorFlow, TensorBoard's Python and Rust loaders) check both
// CRCs, so a record a killed writer left half written is recognised as such, not misread.

#include <cstdint>
#include <string>
#include <string_view>

namespace crsm::metrics {

// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial and final XOR 0xFFFFFFFF),
// the CRC of iSCSI and ext4.
uint32_t crc32c(std::string_view bytes);

// TFRecord's masked form: rotated right by 15 bits, plus 0xa282ead8. Computing the CRC of
// bytes that hold CRCs of their own (a file of records, copied into another record) is
// weak; the mask keeps a stored CRC from looking like one.
uint32_t masked_crc32c(std::string_view bytes);

// One record, framed.
std::string tfrecord(std::string_view data);

}  // namespace crsm::metrics
