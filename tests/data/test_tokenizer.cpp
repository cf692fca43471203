#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "data_test_util.h"

namespace {

using crsm::data::check_vocab_matches;
using crsm::data::load_tokenizer;
using crsm::data::make_byte_tokenizer;
using crsm::testing::data_error_of;
using DataTokenizer = crsm::testing::DataTest;

TEST(DataByteTokenizer, RoundTripsAnyBytesAndDropsSpecials) {
  const auto tok = make_byte_tokenizer();
  const std::string text =
      std::string("h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\n") + '\0' + "\xff";
  const auto ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[1], 0xc3);
  EXPECT_EQ(ids[ids.size() - 2], 0);
  EXPECT_EQ(ids.back(), 255);
  EXPECT_EQ(tok->decode(ids), text);

  EXPECT_EQ(tok->kind(), "byte");
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  EXPECT_TRUE(tok->encode("").empty());
  EXPECT_EQ(tok->decode({256, 'h', 'i', 257}), "hi");
  EXPECT_NE(data_error_of([&] { tok->decode({258}); }).find("258"), std::string::npos);
  EXPECT_NE(data_error_of([&] { tok->decode({-1}); }).find("-1"), std::string::npos);
}

TEST_F(DataTokenizer, ByteTokenizerSavesAndLoads) {
  make_byte_tokenizer()->save(path("tok"));
  std::ifstream in(path("tok/tokenizer.json"));
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("kind"), "byte");
  EXPECT_EQ(j.at("vocab_size"), 258);
  EXPECT_FALSE(j.contains("model_file"));
  const auto tok = load_tokenizer(path("tok"));
  EXPECT_EQ(tok->kind(), "byte");
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{'a', 'b'}));
}

TEST(DataTokenizerCheck, VocabMismatchNamesBothSizes) {
  const auto tok = make_byte_tokenizer();
  check_vocab_matches(*tok, 258, "run.json");
  EXPECT_EQ(data_error_of([&] { check_vocab_matches(*tok, 300, "run.json"); }),
            "run.json: the model's vocab_size is 300 but the tokenizer (byte) has 258 tokens");
}

TEST_F(DataTokenizer, LoadRejectsMissingAndMalformedFiles) {
  const std::string json_path = path("tokenizer.json");
  EXPECT_NE(data_error_of([&] { load_tokenizer(dir.string()); }).find(json_path),
            std::string::npos);

  write_file("tokenizer.json", "{\"kind\": ");
  const std::string malformed = data_error_of([&] { load_tokenizer(dir.string()); });
  EXPECT_NE(malformed.find(json_path), std::string::npos) << malformed;
  EXPECT_NE(malformed.find("malformed"), std::string::npos) << malformed;

  write_file("tokenizer.json", R"({"kind": "wordpiece", "vocab_size": 10})");
  EXPECT_NE(data_error_of([&] { load_tokenizer(dir.string()); }).find("\"kind\""),
            std::string::npos);

  write_file("tokenizer.json", R"({"kind": "byte"})");
  EXPECT_NE(data_error_of([&] { load_tokenizer(dir.string()); }).find("vocab_size"),
            std::string::npos);

  write_file("tokenizer.json", R"({"kind": "byte", "vocab_size": 300})");
  EXPECT_NE(data_error_of([&] { load_tokenizer(dir.string()); }).find("300"), std::string::npos);

  write_file("tokenizer.json", R"({"kind": "sentencepiece", "vocab_size": 300})");
  EXPECT_NE(data_error_of([&] { load_tokenizer(dir.string()); }).find("model_file"),
            std::string::npos);
}

}  // namespace
