#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "checkpoint/sha256.h"

namespace {

using crsm::checkpoint::Sha256;

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

}  // namespace
