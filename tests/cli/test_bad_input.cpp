#include <gtest/gtest.h>

#include "cli_test_support.h"

namespace {

using namespace crsm::testing;

// Each bad input must give a message naming it, a non-zero exit, and overwrite nothing.
class CliBadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new TempDir("cli_bad_input");
    const auto r = prepare_shakespeare_prefix(*work, 60000);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete work; }

  static std::string train(const std::string& run, const std::string& extra,
                           const std::string& data = "") {
    return crsm_train("train --config " + source_path("configs/tiny.json") + " --data " +
                      (data.empty() ? work->str("data") : data) + " --checkpoint-dir " +
                      work->str(run) + " --threads 1 --no-value-loss --eval-every 0 " + extra);
  }

  static void expect_refused(const CommandResult& r, const std::string& names) {
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(names), std::string::npos) << "message should name '" << names << "':\n" << r.output;
  }

  static TempDir* work;
};
TempDir* CliBadInput::work = nullptr;

TEST_F(CliBadInput, EmptyCorpus) {
  write_file(work->path() / "empty.txt", "");
  const auto r = run_command(crsm_train("prepare --input " + work->str("empty.txt") + " --output " + work->str("empty_data")));
  expect_refused(r, "empty.txt");
  EXPECT_FALSE(fs::exists(work->path() / "empty_data"));
}

TEST_F(CliBadInput, CorpusShorterThanOneSequence) {
  write_file(work->path() / "short.txt", "To be, or not to be: that is the question.\nWhether 'tis nobler\n");
  const auto prep = run_command(crsm_train("prepare --input " + work->str("short.txt") + " --output " + work->str("short_data")));
  ASSERT_EQ(prep.status, 0) << prep.output;
  const auto r = run_command(train("short_run", "--max-steps 2", work->str("short_data")));
  expect_refused(r, "seq");
  EXPECT_FALSE(fs::exists(work->path() / "short_run" / "checkpoints" / "latest"));
}

TEST_F(CliBadInput, SeqLenLongerThanTheValSplit) {
  const auto r = run_command(train("long_seq", "--max-steps 2 --seq-len 8000"));
  expect_refused(r, "--seq-len 8000");
  EXPECT_FALSE(fs::exists(work->path() / "long_seq" / "metrics.jsonl"));
}

TEST_F(CliBadInput, TruncatedShardAndIndex) {
  fs::copy(work->path() / "data", work->path() / "cut_data", fs::copy_options::recursive);
  const auto shard = work->path() / "cut_data" / "train_000.bin";
  fs::resize_file(shard, fs::file_size(shard) - 3);
  expect_refused(run_command(train("cut_run", "--max-steps 2", work->str("cut_data"))), "train_000.bin");

  fs::copy(work->path() / "data", work->path() / "cut_index", fs::copy_options::recursive);
  const std::string index = read_file(work->path() / "cut_index" / "index.json");
  write_file(work->path() / "cut_index" / "index.json", index.substr(0, index.size() / 2));
  expect_refused(run_command(train("cut_index_run", "--max-steps 2", work->str("cut_index"))), "index.json");
}

TEST_F(CliBadInput, TokenizerModelVocabularyMismatch) {
  const auto r = run_command(train("vocab", "--max-steps 2 --vocab-size 300"));
  expect_refused(r, "vocab_size is 300");
}

TEST_F(CliBadInput, MalformedAndUnknownConfigKeys) {
  write_file(work->path() / "unknown.json", R"({"d_model": 32, "d_modle": 3})");
  write_file(work->path() / "malformed.json", R"({"d_model": 32,)");
  write_file(work->path() / "wrong_type.json", R"({"dropout": "high"})");
  auto with_config = [&](const std::string& cfg) {
    return run_command(crsm_train("train --config " + work->str(cfg) + " --data " + work->str("data") +
                                  " --checkpoint-dir " + work->str("cfg_run")));
  };
  expect_refused(with_config("unknown.json"), "unknown key 'd_modle'");
  expect_refused(with_config("malformed.json"), "malformed.json");
  expect_refused(with_config("wrong_type.json"), "key 'dropout'");
  expect_refused(run_command(train("flag_run", "--batch-size 0")), "key 'batch_size'");
}

TEST_F(CliBadInput, MissingOrDamagedCheckpointForResume) {
  expect_refused(run_command(train("missing", "--max-steps 2 --resume " + work->str("no_such_run"))), "no_such_run");

  const auto ok = run_command(train("damaged", "--max-steps 4 --save-every 2 --keep-last 0"));
  ASSERT_EQ(ok.status, 0) << ok.output;
  const auto newest = work->path() / "damaged" / "checkpoints" / "step_00000004";
  {
    std::fstream f(newest / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    f.put('\x7f');
  }
  const std::string metrics_before = read_file(work->path() / "damaged" / "metrics.jsonl");
  const auto explicit_path = run_command(train("damaged", "--max-steps 6 --resume " + newest.string()));
  expect_refused(explicit_path, "step_00000004");
  EXPECT_NE(explicit_path.output.find("damaged"), std::string::npos) << explicit_path.output;
  EXPECT_EQ(read_file(work->path() / "damaged" / "metrics.jsonl"), metrics_before);

  const auto fallback = run_command(train("damaged", "--max-steps 6 --resume auto"));
  EXPECT_EQ(fallback.status, 0) << fallback.output;
  EXPECT_NE(fallback.output.find("skipping damaged checkpoint"), std::string::npos) << fallback.output;
  EXPECT_NE(fallback.output.find("at step 2"), std::string::npos) << fallback.output;
}

TEST_F(CliBadInput, FreshRunRefusesADirectoryWithCheckpoints) {
  const auto first = run_command(train("taken", "--max-steps 1"));
  ASSERT_EQ(first.status, 0) << first.output;
  const std::string before = read_file(work->path() / "taken" / "metrics.jsonl");
  expect_refused(run_command(train("taken", "--max-steps 1")), "already holds checkpoints");
  EXPECT_EQ(read_file(work->path() / "taken" / "metrics.jsonl"), before);
}

// The message names the flag the user typed, not an internal one.
TEST_F(CliBadInput, GenerateAndExportNameTheirOwnFlagForAMissingCheckpoint) {
  fs::create_directories(work->path() / "empty_run");
  expect_refused(run_command(crsm_train("generate --model " + work->str("empty_run") + " --prompt x")),
                 "--model " + work->str("empty_run") + ": holds no complete checkpoint");
  expect_refused(run_command(crsm_train("export --checkpoint " + work->str("empty_run") + " --output " +
                                        work->str("x.safetensors"))),
                 "--checkpoint " + work->str("empty_run"));
  EXPECT_FALSE(fs::exists(work->path() / "x.safetensors"));
}

TEST_F(CliBadInput, CudaDeviceWithoutAGpu) {
  if (run_command("nvidia-smi -L").status == 0) GTEST_SKIP() << "this machine has a GPU";
  expect_refused(run_command(train("nogpu", "--max-steps 1 --device cuda")),
                 "--device cuda: no CUDA device is available");
  expect_refused(run_command(std::string(CRSM_MPIEXEC) + " --allow-run-as-root --oversubscribe -np 2 " +
                             train("nogpu2", "--max-steps 1 --device cuda")),
                 "--device cuda: no CUDA device is available");
}

TEST_F(CliBadInput, ZeroStageOutOfRange) {
  expect_refused(run_command(train("zero", "--max-steps 1 --zero-stage 3")), "zero_stage");
}

TEST_F(CliBadInput, UnknownOptionAndCommand) {
  expect_refused(run_command(train("opt", "--bogus-flag 1")), "bogus-flag");
  expect_refused(run_command(crsm_train("fly")), "unknown command 'fly'");
}

}  // namespace
