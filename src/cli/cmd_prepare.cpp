#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "data/prepare.h"
#include "dist/runtime.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& prepare_options() {
  static const std::vector<Option> table = {
      Option("input", Constraint::path(), "text or JSON Lines files to tokenize").many().mandatory(),
      Option("input-format", Constraint::word({"text", "jsonl"}), "text: each file one document | jsonl: one JSON object per line, its text under --json-key (each document ended by the end-of-sequence token)").with_default("text"),
      Option("json-key", Constraint::satisfying([](const std::string& k) { return !k.empty(); }, "a field name"), "jsonl: the field that holds each document's text").with_default("text"),
      Option("tokenizer", Constraint::path(), "byte | sentencepiece | PATH.model (an existing SentencePiece model)").with_default("byte"),
      Option("vocab-size", Constraint::integer(0, (int64_t{1} << 31) - 1), "vocabulary to train (sentencepiece); byte is always 258").with_default("0"),
      Option("val-fraction", Constraint::number(0, 1, /*lo_open=*/true, /*hi_open=*/true), "last fraction of each input kept for validation").with_default("0.1"),
      Option("output", Constraint::path(), "new directory for shards, index.json and the tokenizer").mandatory(),
  };
  return table;
}

}  // namespace

int prepare_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train prepare --input FILE... --output DIR [options]",
                                    prepare_options());
  if (!parsed) return 0;
  data::PrepareOptions p;
  p.inputs = parsed->texts("input");
  p.format = data::parse_input_format(parsed->text("input-format"));
  p.json_key = parsed->text("json-key");
  if (parsed->given("json-key") && p.format != data::InputFormat::kJsonl)
    throw UsageError("--json-key applies to --input-format jsonl (this run reads " + parsed->text("input-format") + ")");
  p.tokenizer = parsed->text("tokenizer");
  p.vocab_size = parsed->integer("vocab-size");
  p.val_fraction = parsed->number("val-fraction");
  p.output_dir = parsed->text("output");
  check_output_directory("--output", p.output_dir, {});
  p.stop_requested = dist::preemption_signalled;
  const auto s = [&] {
    try {
      return data::prepare_corpus(p);
    } catch (const data::PrepareStopped&) {
      dist::stop_if_preempted("prepare", "while tokenizing; nothing was written: rerun the command");
      throw;
    }
  }();
  std::printf("prepare: %s: %lld train / %lld val tokens, vocabulary %lld, %s shards\n",
              p.output_dir.c_str(), static_cast<long long>(s.train_tokens),
              static_cast<long long>(s.val_tokens), static_cast<long long>(s.vocab_size), s.dtype.c_str());
  return 0;
}

}  // namespace crsm::cli
