#include <cstdio>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "data/prepare.h"

namespace crsm::cli {

int prepare_command(int argc, char** argv) {
  po::options_description o("crsm_train prepare options");
  o.add_options()
      ("input", po::value<std::vector<std::string>>()->multitoken()->required(), "text files to tokenize")
      ("tokenizer", po::value<std::string>()->default_value("byte"), "byte | sentencepiece | PATH.model (an existing SentencePiece model)")
      ("vocab-size", po::value<int64_t>()->default_value(0), "vocabulary to train (sentencepiece); byte is always 258")
      ("val-fraction", po::value<double>()->default_value(0.1, "0.1"), "last fraction of each input kept for validation")
      ("output", po::value<std::string>()->required(), "new directory for shards, index.json and the tokenizer");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: crsm_train prepare --input FILE... --output DIR [options]", o, vm)) return 0;
  data::PrepareOptions p;
  p.inputs = vm["input"].as<std::vector<std::string>>();
  p.tokenizer = vm["tokenizer"].as<std::string>();
  p.vocab_size = vm["vocab-size"].as<int64_t>();
  p.val_fraction = vm["val-fraction"].as<double>();
  p.output_dir = vm["output"].as<std::string>();
  const auto s = data::prepare_corpus(p);
  std::printf("prepare: %s: %lld train / %lld val tokens, vocabulary %lld, %s shards\n",
              p.output_dir.c_str(), static_cast<long long>(s.train_tokens),
              static_cast<long long>(s.val_tokens), static_cast<long long>(s.vocab_size), s.dtype.c_str());
  return 0;
}

}  // namespace crsm::cli
