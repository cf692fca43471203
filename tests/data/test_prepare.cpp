#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "data/prepare.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "data_test_util.h"

namespace {

namespace fs = std::filesystem;
using crsm::data::load_tokenizer;
using crsm::data::make_byte_tokenizer;
using crsm::data::prepare_corpus;
using crsm::data::PrepareOptions;
using crsm::data::TokenSplit;
using crsm::testing::data_error_of;
using crsm::testing::generated_corpus;

class DataPrepare : public crsm::testing::DataTest {
 protected:
  PrepareOptions options(std::vector<std::string> inputs) const {
    PrepareOptions opt;
    opt.inputs = std::move(inputs);
    opt.output_dir = path("out");
    return opt;
  }

  std::vector<int64_t> tokens_of(const std::string& split) const {
    const auto s = TokenSplit::open(path("out"), split);
    std::vector<int64_t> out(s.size());
    s.read(0, s.size(), out.data());
    return out;
  }

  nlohmann::json index() const {
    std::ifstream in(path("out/index.json"));
    return nlohmann::json::parse(in);
  }

  // Names in dir other than the given ones: leftovers of a failed prepare.
  std::vector<std::string> entries_besides(const std::vector<std::string>& expected) const {
    std::vector<std::string> extra;
    for (const auto& e : fs::directory_iterator(dir)) {
      const auto name = e.path().filename().string();
      if (std::find(expected.begin(), expected.end(), name) == expected.end())
        extra.push_back(name);
    }
    return extra;
  }
};

// Where prepare cuts an ASCII text of n bytes.
size_t train_bytes(size_t n, double val_fraction) {
  return static_cast<size_t>(std::floor(static_cast<double>(n) * (1 - val_fraction)));
}

std::vector<int64_t> with_eos(const std::vector<int32_t>& ids, int32_t eos) {
  std::vector<int64_t> out(ids.begin(), ids.end());
  out.push_back(eos);
  return out;
}

std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// JSON Lines: each line's text under the key is a document ended by the end-of-sequence
// token, JSON escapes decoded; the last val_fraction of the documents is validation;
// blank lines are skipped; a line that is not an object with that string field is
// refused naming the file and the line, before anything is written.
TEST_F(DataPrepare, JsonLinesDocumentsEachEndWithEndOfSequence) {
  std::vector<std::string> docs;
  std::string jsonl;
  for (int i = 0; i < 10; ++i) {
    docs.push_back("doc " + std::to_string(i) + (i == 3 ? "\nwith a line, \"quotes\" and \u00e9" : ""));
    jsonl += nlohmann::json{{"id", i}, {"body", docs.back()}}.dump() + (i == 5 ? "\n\n" : "\n");
  }
  auto opt = options({write_file("docs.jsonl", jsonl)});
  opt.format = crsm::data::InputFormat::kJsonl;
  opt.json_key = "body";
  opt.val_fraction = 0.2;
  prepare_corpus(opt);
  const auto tok = make_byte_tokenizer();
  std::vector<int64_t> train, val;
  for (int i = 0; i < 10; ++i) (i < 8 ? train : val) = concat(i < 8 ? train : val, with_eos(tok->encode(docs[i]), 257));
  EXPECT_EQ(tokens_of("train"), train);
  EXPECT_EQ(tokens_of("val"), val);
  EXPECT_EQ(index()["inputs"][0]["documents"], 10);
  EXPECT_EQ(index()["inputs"][0]["val_documents"], 2);

  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"{\"body\": \"a\"}\n[1, 2]\n", "bad.jsonl line 2: expected a JSON object (JSON Lines: one per line)"},
           {"{\"body\": \"a\"}\n{\"text\": \"b\"}\n", "bad.jsonl line 2: expected a string field \"body\" (--json-key)"},
           {"{\"body\": 7}\n", "bad.jsonl line 1: expected a string field \"body\""},
           {"{\"body\": \"a\"\n", "bad.jsonl line 1: expected a JSON object"},
           {"{\"body\": \"only one\"}\n", "bad.jsonl: its train part would be empty (1 documents, val_fraction 0.2"},
           {"\n  \n", "bad.jsonl: holds no document (every line is blank)"}}) {
    fs::remove_all(path("out"));
    auto bad = opt;
    bad.inputs = {write_file("bad.jsonl", text)};
    EXPECT_NE(data_error_of([&] { prepare_corpus(bad); }).find(says), std::string::npos) << text;
    EXPECT_FALSE(fs::exists(path("out"))) << text;
  }
}

TEST_F(DataPrepare, ByteCorpusWritesIndexShardsAndTokenizer) {
  const std::string a = generated_corpus(40, 1), b = generated_corpus(25, 2);
  const auto summary = prepare_corpus(options({write_file("a.txt", a), write_file("b.txt", b)}));
  const size_t cut_a = train_bytes(a.size(), 0.1), cut_b = train_bytes(b.size(), 0.1);
  const auto tok = make_byte_tokenizer();
  const auto train = concat(with_eos(tok->encode(a.substr(0, cut_a)), 257),
                            with_eos(tok->encode(b.substr(0, cut_b)), 257));
  const auto val = concat(with_eos(tok->encode(a.substr(cut_a)), 257),
                          with_eos(tok->encode(b.substr(cut_b)), 257));
  EXPECT_EQ(tokens_of("train"), train);
  EXPECT_EQ(tokens_of("val"), val);
  EXPECT_EQ(summary.train_tokens, static_cast<int64_t>(train.size()));
  EXPECT_EQ(summary.val_tokens, static_cast<int64_t>(val.size()));
  EXPECT_EQ(summary.vocab_size, 258);
  EXPECT_EQ(summary.dtype, "uint16");

  const auto j = index();
  EXPECT_EQ(j.at("format_version"), 1);
  EXPECT_EQ(j.at("dtype"), "uint16");
  EXPECT_EQ(j.at("vocab_size"), 258);
  EXPECT_EQ(j.at("tokenizer"), "tokenizer.json");
  ASSERT_EQ(j.at("inputs").size(), 2u);
  EXPECT_EQ(j.at("inputs")[0].at("path"), path("a.txt"));
  EXPECT_EQ(j.at("inputs")[0].at("bytes"), a.size());
  EXPECT_EQ(j.at("inputs")[0].at("train_tokens"), cut_a + 1);
  EXPECT_EQ(j.at("inputs")[1].at("val_tokens"), b.size() - cut_b + 1);
  EXPECT_EQ(j.at("splits").at("train").at("tokens"), train.size());
  const auto& shard = j.at("splits").at("val").at("shards").at(0);
  EXPECT_EQ(shard.at("file"), "val_000.bin");
  EXPECT_EQ(shard.at("tokens"), val.size());
  EXPECT_EQ(fs::file_size(path("out/val_000.bin")), 2 * val.size());
  EXPECT_EQ(load_tokenizer(path("out"))->kind(), "byte");
  EXPECT_EQ(entries_besides({"a.txt", "b.txt", "out"}), std::vector<std::string>{});
}

TEST_F(DataPrepare, SplitsAtAUtf8Boundary) {
  // 9 ASCII bytes then a 3-byte character: the 90% cut (byte 10) falls inside it.
  const std::string text = "abcdefghi\xe6\x97\xa5";
  prepare_corpus(options({write_file("a.txt", text)}));
  const auto tok = make_byte_tokenizer();
  EXPECT_EQ(tokens_of("train"), with_eos(tok->encode("abcdefghi"), 257));
  EXPECT_EQ(tokens_of("val"), with_eos(tok->encode("\xe6\x97\xa5"), 257));
}

TEST_F(DataPrepare, SentencePieceCountsAreEncodedLengthsPlusEos) {
  const std::string text = generated_corpus(150, 3);
  auto opt = options({write_file("a.txt", text)});
  opt.tokenizer = "sentencepiece";
  opt.vocab_size = 300;
  opt.val_fraction = 0.2;
  const auto summary = prepare_corpus(opt);
  const auto tok = load_tokenizer(path("out"));
  EXPECT_EQ(tok->vocab_size(), 300);
  const size_t cut = train_bytes(text.size(), 0.2);
  const auto train = with_eos(tok->encode(text.substr(0, cut)), tok->eos_id());
  EXPECT_EQ(tokens_of("train"), train);
  EXPECT_EQ(summary.val_tokens, static_cast<int64_t>(tok->encode(text.substr(cut)).size() + 1));
  EXPECT_EQ(index().at("dtype"), "uint16");

  // The saved model can tokenize another corpus the same way.
  fs::rename(path("out"), path("first"));
  opt.tokenizer = path("first/tokenizer.model");
  EXPECT_EQ(prepare_corpus(opt).train_tokens, static_cast<int64_t>(train.size()));
  opt.vocab_size = 400;
  fs::remove_all(path("out"));
  EXPECT_NE(data_error_of([&] { prepare_corpus(opt); }).find("400"), std::string::npos);
}

TEST_F(DataPrepare, OutputDirMustBeNewOrEmpty) {
  write_file("a.txt", generated_corpus(10, 5));
  fs::create_directories(path("out"));
  write_file("out/keep.txt", "mine");
  const std::string msg = data_error_of([&] { prepare_corpus(options({path("a.txt")})); });
  EXPECT_NE(msg.find(path("out")), std::string::npos) << msg;
  EXPECT_NE(msg.find("never overwrites"), std::string::npos) << msg;
  EXPECT_EQ(std::vector<fs::path>(fs::directory_iterator(path("out")), {}),
            std::vector<fs::path>{path("out/keep.txt")});
  EXPECT_EQ(entries_besides({"a.txt", "out"}), std::vector<std::string>{});

  fs::remove(path("out/keep.txt"));
  prepare_corpus(options({path("a.txt")}));
  EXPECT_TRUE(fs::exists(path("out/index.json")));
}

TEST_F(DataPrepare, RejectsBadInputsAndOptionsByName) {
  const std::string good = write_file("good.txt", generated_corpus(10, 6));
  const std::string empty = write_file("empty.txt", "");
  const std::string msg = data_error_of([&] { prepare_corpus(options({good, empty})); });
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;

  const std::string missing = path("missing.txt");
  EXPECT_NE(data_error_of([&] { prepare_corpus(options({good, missing})); }).find(missing),
            std::string::npos);

  auto opt = options({good});
  opt.val_fraction = 1.0;
  EXPECT_NE(data_error_of([&] { prepare_corpus(opt); }).find("val_fraction"), std::string::npos);
  opt.val_fraction = 0.0;
  EXPECT_NE(data_error_of([&] { prepare_corpus(opt); }).find("val_fraction"), std::string::npos);

  opt = options({good});
  opt.vocab_size = 300;
  EXPECT_NE(data_error_of([&] { prepare_corpus(opt); }).find("byte"), std::string::npos);
  opt.tokenizer = "sentencepiece";
  opt.vocab_size = 0;
  EXPECT_NE(data_error_of([&] { prepare_corpus(opt); }).find("vocab_size"), std::string::npos);
  opt.tokenizer = path("nonexistent.model");
  EXPECT_NE(data_error_of([&] { prepare_corpus(opt); }).find(opt.tokenizer), std::string::npos);

  // One byte: its 90% train part is empty.
  const std::string tiny = write_file("tiny.txt", "x");
  const std::string no_train = data_error_of([&] { prepare_corpus(options({tiny})); });
  EXPECT_NE(no_train.find(tiny), std::string::npos) << no_train;
  EXPECT_NE(no_train.find("train part"), std::string::npos) << no_train;
  EXPECT_EQ(entries_besides({"good.txt", "empty.txt", "tiny.txt"}), std::vector<std::string>{});
}

TEST_F(DataPrepare, LeavesNothingBehindWhenTokenizerTrainingFails) {
  auto opt = options({write_file("a.txt", generated_corpus(20, 8))});
  opt.tokenizer = "sentencepiece";
  opt.vocab_size = 50;  // cannot hold the 256 byte pieces
  EXPECT_FALSE(data_error_of([&] { prepare_corpus(opt); }).empty());
  EXPECT_EQ(entries_besides({"a.txt"}), std::vector<std::string>{});
}

}  // namespace
