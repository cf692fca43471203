// Values packed by base/packed.h come back as they went, and bytes that do not match
// what is read are refused instead of read past.
#include "base/packed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace crsm::base {

struct Inner {
  std::string name;
  std::vector<double> values;
};
template <typename A, typename S, if_is<S, Inner> = 0>
void fields(A& a, S& s) { a(s.name, s.values); }

enum class Colour : int8_t { kRed = 1, kBlue = -2 };

struct Outer {
  int64_t index = 0;
  bool flag = false;
  Colour colour = Colour::kRed;
  std::vector<Inner> inners;
  std::map<int64_t, int64_t> counts;
};
template <typename A, typename S, if_is<S, Outer> = 0>
void fields(A& a, S& s) { a(s.index, s.flag, s.colour, s.inners, s.counts); }

std::string pack(const std::vector<Outer>& v) {
  Packer p;
  p(v);
  return p.bytes();
}

TEST(Packed, NestedValuesComeBackAsTheyWent) {
  const std::vector<Outer> sent = {
      {-7, true, Colour::kBlue, {{std::string("a\0b", 3), {1.5, -0.0, std::numeric_limits<double>::infinity()}}, {"", {}}}, {{3, 4}, {-1, 9}}},
      {std::numeric_limits<int64_t>::max(), false, Colour::kRed, {}, {}}};
  const std::string bytes = pack(sent);
  std::vector<Outer> got;
  Unpacker u(bytes);
  u(got);
  u.finish();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].index, -7);
  EXPECT_TRUE(got[0].flag);
  EXPECT_EQ(got[0].colour, Colour::kBlue);
  ASSERT_EQ(got[0].inners.size(), 2u);
  EXPECT_EQ(got[0].inners[0].name, std::string("a\0b", 3));
  EXPECT_EQ(got[0].inners[0].values, sent[0].inners[0].values);
  EXPECT_TRUE(std::signbit(got[0].inners[0].values[1]));
  EXPECT_EQ(got[0].inners[1].name, "");
  EXPECT_EQ(got[0].counts, sent[0].counts);
  EXPECT_EQ(got[1].index, std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(got[1].inners.empty());
}

TEST(Packed, ShortOrLongBytesAreRefused) {
  const std::string bytes = pack({{1, true, Colour::kRed, {{"name", {1, 2, 3}}}, {{1, 1}}}});
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    std::vector<Outer> got;
    const std::string part = bytes.substr(0, cut);
    Unpacker u(part);
    EXPECT_THROW(u(got), std::logic_error) << "cut at " << cut;
  }
  std::vector<Outer> got;
  const std::string longer = bytes + "x";
  Unpacker u(longer);
  u(got);
  EXPECT_THROW(u.finish(), std::logic_error);
}

TEST(Packed, AHugeCountIsRefusedBeforeAnythingIsAllocated) {
  Packer p;
  p(std::numeric_limits<uint64_t>::max());
  std::vector<Outer> got;
  Unpacker u(p.bytes());
  EXPECT_THROW(u(got), std::logic_error);
}

}  // namespace crsm::base
