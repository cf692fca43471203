#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "checkpoint/sha256.h"
#include "checkpoint/sha256_blocks.h"

namespace {

using crsm::checkpoint::Sha256;
namespace detail = crsm::checkpoint::detail;

TEST(DistSha256, KnownVectors) {
  Sha256 empty;
  EXPECT_EQ(empty.hex_digest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 abc;
  abc.update("abc", 3);
  EXPECT_EQ(abc.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two blocks, fed in uneven pieces.
  const std::string msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  Sha256 pieces;
  pieces.update(msg.data(), 5);
  pieces.update(msg.data() + 5, msg.size() - 5);
  EXPECT_EQ(pieces.hex_digest(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(DistSha256, MillionAsFedInOddPieces) {
  const std::string million(1000000, 'a');
  Sha256 hash;
  for (size_t at = 0, piece = 1; at < million.size(); at += piece, piece = piece * 3 % 1000 + 1)
    hash.update(million.data() + at, std::min(piece, million.size() - at));
  EXPECT_EQ(hash.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(DistSha256, AcceleratedBlocksMatchTheReference) {
  const auto accelerated = detail::sha256_blocks_accelerated();
  if (!accelerated) GTEST_SKIP() << "this CPU has no SHA extensions";
  std::mt19937 rng(7);
  std::vector<uint8_t> data(64 * 37);
  for (auto& byte : data) byte = static_cast<uint8_t>(rng());
  for (size_t count : {0, 1, 2, 3, 16, 37}) {
    uint32_t expected[8], got[8];
    for (int i = 0; i < 8; ++i) expected[i] = got[i] = static_cast<uint32_t>(rng());
    detail::sha256_blocks_reference(expected, data.data(), count);
    accelerated(got, data.data(), count);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(got[i], expected[i]) << count << " blocks, word " << i;
  }
}

}  // namespace
