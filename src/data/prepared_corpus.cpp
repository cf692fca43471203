#include "data/prepared_corpus.h"

#include <filesystem>

#include "data/data_error.h"
#include "data/shard_format.h"
#include "data/tokenizer_file.h"

namespace crsm::data {

PreparedCorpus PreparedCorpus::open(const std::string& dir) {
  PreparedCorpus c{load_tokenizer(dir), TokenSplit::open(dir, "train"), TokenSplit::open(dir, "val")};
  if (c.train.vocab_size() != c.tokenizer->vocab_size())
    throw DataError((std::filesystem::path(dir) / kIndexFile).string() + ": \"vocab_size\" is " +
                    std::to_string(c.train.vocab_size()) + " but the corpus's tokenizer (" +
                    (std::filesystem::path(dir) / kTokenizerFile).string() + ", " + c.tokenizer->kind() +
                    ") has " + std::to_string(c.tokenizer->vocab_size()) + " tokens");
  return c;
}

}  // namespace crsm::data
