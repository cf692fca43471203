#include <gtest/gtest.h>

#include "data/tokenizer.h"
#include "data_test_util.h"

namespace {

using crsm::data::load_sentencepiece_model;
using crsm::data::load_tokenizer;
using crsm::data::train_sentencepiece;
using crsm::testing::data_error_of;
using crsm::testing::generated_corpus;
using DataSentencePiece = crsm::testing::DataTest;

const std::string kSample = "the quick  brown fox,\n\tjumps over the lazy dog.\n";

TEST_F(DataSentencePiece, BpeHasExactVocabAndRoundTrips) {
  const auto tok = train_sentencepiece({write_file("a.txt", generated_corpus(120, 1)),
                                        write_file("b.txt", generated_corpus(80, 2))},
                                       400);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), 400);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  const auto ids = tok->encode(kSample);
  EXPECT_LT(ids.size(), kSample.size() / 2) << "merges were learned";
  EXPECT_EQ(tok->decode(ids), kSample);
  // Unseen characters fall back to bytes.
  const std::string unseen = "Zebra \xe6\x97\xa5\xe6\x9c\xac!";
  EXPECT_EQ(tok->decode(tok->encode(unseen)), unseen);
  EXPECT_EQ(tok->decode({tok->bos_id(), ids[0], tok->eos_id()}), tok->decode({ids[0]}));
}

TEST_F(DataSentencePiece, UnigramHasExactVocab) {
  const auto tok =
      train_sentencepiece({write_file("a.txt", generated_corpus(200, 3))}, 300, "unigram");
  EXPECT_EQ(tok->vocab_size(), 300);
  EXPECT_EQ(tok->decode(tok->encode(kSample)), kSample);
}

TEST_F(DataSentencePiece, SavesAndLoadsTheSameModel) {
  const auto tok = train_sentencepiece({write_file("a.txt", generated_corpus(150, 4))}, 300);
  tok->save(path("out"));
  const auto loaded = load_tokenizer(path("out"));
  EXPECT_EQ(loaded->kind(), "sentencepiece");
  EXPECT_EQ(loaded->vocab_size(), 300);
  EXPECT_EQ(loaded->encode(kSample), tok->encode(kSample));
  EXPECT_EQ(load_sentencepiece_model(path("out/tokenizer.model"))->encode(kSample),
            tok->encode(kSample));
}

TEST_F(DataSentencePiece, ImpossibleRequestsNameTheirInput) {
  const std::string corpus = write_file("corpus.txt", generated_corpus(50, 5));
  const std::string too_small = data_error_of([&] { train_sentencepiece({corpus}, 100); });
  EXPECT_NE(too_small.find(corpus), std::string::npos) << too_small;
  EXPECT_NE(too_small.find("100"), std::string::npos) << too_small;

  const std::string missing = path("missing.txt");
  EXPECT_NE(data_error_of([&] { train_sentencepiece({missing}, 300); }).find(missing),
            std::string::npos);
  EXPECT_NE(data_error_of([&] { train_sentencepiece({corpus}, 300, "word"); }).find("word"),
            std::string::npos);

  const std::string garbage = write_file("bad.model", "not a model");
  EXPECT_NE(data_error_of([&] { load_sentencepiece_model(garbage); }).find(garbage),
            std::string::npos);
}

}  // namespace
