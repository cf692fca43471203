// The bad-input table (SPEC §11): every row is a command line a user could type, the
// exit status it must end with, a fragment its message must contain (the flag, key or
// path it names), and the promise that it changed nothing: the SHA-256 of every file and
// the list of directories under the work directory are the same before and after.
// Every command and option added later adds its rows here.
#include <gtest/gtest.h>

#include <map>
#include <regex>

#include "cli_test_support.h"

namespace {

using namespace crsm::testing;

struct Row {
  std::string args;  // after `crsm_train`; {W} is the work directory, {CFG} configs/tiny.json
  int status;
  std::string says;  // a fragment of the message, with the same substitutions
};

// What a refused command may never print: internals of LibTorch, the C++ runtime or MPI.
const char* const kInternals[] = {"Exception raised from", "frame #", "c10::", "terminate called",
                                  "basic_filebuf", "std::", "MPI_ABORT", "Segmentation", "what():"};

class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new TempDir("bad_input");
    const auto prep = prepare_shakespeare_prefix(*work, 60000);
    ASSERT_EQ(prep.status, 0) << prep.output;
    make_files();
  }
  static void TearDownTestSuite() { delete work; }

  static std::string substitute(std::string text) {
    text = std::regex_replace(text, std::regex("\\{W\\}"), work->str());
    text = std::regex_replace(text, std::regex("\\{CFG\\}"), source_path("configs/tiny.json"));
    return text;
  }

  // Every file's SHA-256 and every directory under the work directory.
  static std::string snapshot() {
    return run_command("cd " + work->str() + " && find . -type d | sort && find . -type f -print0 | sort -z | "
                       "xargs -0 sha256sum").output;
  }

  // `launcher` runs each row under mpirun, say ("" runs it as one process).
  static void expect_rows(const std::vector<Row>& rows, const std::string& launcher = "") {
    for (const auto& row : rows) {
      const std::string command = substitute(row.args);
      SCOPED_TRACE(launcher + "crsm_train " + command);
      const std::string before = snapshot();
      // Without the OpenBLAS re-exec (other tests cover it), each row starts once, not twice.
      const auto r = run_command("CRSM_NO_BLAS_SETUP=1 timeout 120 " + launcher + crsm_train(command));
      EXPECT_EQ(r.status, row.status) << r.output;
      EXPECT_NE(r.output.find(substitute(row.says)), std::string::npos)
          << "the message should name '" << substitute(row.says) << "':\n" << r.output;
      for (const char* internal : kInternals)
        EXPECT_EQ(r.output.find(internal), std::string::npos) << "shows internals (" << internal << "):\n" << r.output;
      EXPECT_EQ(snapshot(), before) << "the command changed the work directory";
    }
  }

  // A trained run (2 steps, checkpoints at 1 and 2), built on first use.
  static void need_run() {
    if (fs::exists(work->path() / "run")) return;
    const auto r = run_command(crsm_train("train --config " + source_path("configs/tiny.json") + " --data " +
                                          work->str("data") + " --checkpoint-dir " + work->str("run") +
                                          " --threads 1 --no-value-loss --eval-every 0 --max-steps 2 "
                                          "--save-every 1 --keep-last 0 --log-every 1"));
    ASSERT_EQ(r.status, 0) << r.output;
    fs::create_directories(work->path() / "damaged_run" / "checkpoints");
    fs::copy(work->path() / "run" / "checkpoints" / "step_00000002",
             work->path() / "damaged_run" / "checkpoints" / "step_00000002", fs::copy_options::recursive);
    std::fstream f(work->path() / "damaged_run" / "checkpoints" / "step_00000002" / "model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    f.put('\x7f');
  }

  // A distillation of the run's last checkpoint ({W}/dyn), assembled into {W}/full, and a
  // truncated copy of its collection ({W}/cut_transitions).
  static void need_dynamics() {
    need_run();
    if (fs::exists(work->path() / "full")) return;
    const auto d = run_command(crsm_train("distill --model-path " + work->str("run") + " --output-path " + work->str("dyn") +
                                          " --data " + work->str("data") + " --num-samples 300 --val-samples 100 --epochs 1 "
                                          "--batch-size 64 --threads 1"));
    ASSERT_EQ(d.status, 0) << d.output;
    const auto a = run_command(crsm_train("assemble --backbone " + work->str("run") + " --dynamics " + work->str("dyn") +
                                          " --output " + work->str("full")));
    ASSERT_EQ(a.status, 0) << a.output;
    fs::create_directories(work->path() / "cut_transitions");
    for (const char* split : {"train", "val"}) {
      const std::string name = std::string(split) + ".h5";
      fs::copy(work->path() / "dyn" / "transitions" / split, work->path() / "cut_transitions" / split, fs::copy_options::recursive);
      fs::copy(work->path() / "dyn" / "transitions" / name, work->path() / "cut_transitions" / name);
    }
    const auto rank_file = work->path() / "cut_transitions" / "train" / "rank00000.h5";
    fs::resize_file(rank_file, fs::file_size(rank_file) / 2);
    // The assembled run with its dynamics file cut short.
    fs::copy(work->path() / "full", work->path() / "cut_full", fs::copy_options::recursive);
    const auto dynamics = work->path() / "cut_full" / "checkpoints" / "step_00000002" / "dynamics.safetensors";
    fs::resize_file(dynamics, fs::file_size(dynamics) - 7);
  }

  static void make_files() {
    const fs::path w = work->path();
    write_file(w / "empty.txt", "");
    write_file(w / "short.txt", "To be, or not to be: that is the question.\nWhether 'tis nobler\n");
    fs::create_directories(w / "a_directory");
    fs::create_directories(w / "empty_dir");
    write_file(w / "malformed.json", R"({"d_model": 32,)");
    write_file(w / "unknown.json", R"({"d_model": 32, "d_modle": 3})");
    write_file(w / "wrong_type.json", R"({"dropout": "high"})");
    write_file(w / "negative_lr.json", R"({"lr": -1})");
    write_file(w / "dt_rank.json", R"({"d_model": 4, "dt_rank": 9})");
    write_file(w / "d64.json", R"({"d_model": 64})");
    write_file(w / "huge.json", R"({"vocab_size": 258, "d_model": 16384, "d_ffn": 64, "num_layers": 2, "d_state": 16777216,
                                    "batch_size": 12, "seq_len": 32})");
    write_file(w / "uncountable.json", R"({"num_layers": 4096, "d_model": 16777216, "d_state": 16777216, "expand": 64})");
    write_file(w / "existing.safetensors", "mine");
    write_file(w / "existing.svg", "mine");
    fs::create_directories(w / "died");
    write_file(w / "died" / "metrics.jsonl", "{\"step\": 10, \"split\": \"train\", \"loss\": 4.2}\n");
    write_file(w / "died" / "config.json", "{}\n");
    fs::create_directories(w / "bad_metrics");
    write_file(w / "bad_metrics" / "metrics.jsonl", "{\"step\": 1, \"split\": \"train\", \"loss\": 4.2}\nnot json\n{}\n");
    const auto damaged_copy = [&](const std::string& name) {
      fs::copy(w / "data", w / name, fs::copy_options::recursive);
      return w / name;
    };
    const auto cut = damaged_copy("cut_data") / "train_000.bin";
    fs::resize_file(cut, fs::file_size(cut) - 3);
    const auto index = damaged_copy("cut_index") / "index.json";
    const std::string text = read_file(index);
    write_file(index, text.substr(0, text.size() / 2));
    const auto vocab = damaged_copy("vocab300") / "index.json";
    write_file(vocab, std::regex_replace(read_file(vocab), std::regex("\"vocab_size\": 258"), "\"vocab_size\": 300"));
    write_file(w / "task.json", R"({"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]], "output": [[4, 3]]}]})");
    write_file(w / "ragged.jsonl", std::string(R"({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[2]], "output": [[2]]}]})") +
                                       "\n" + R"({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[2]], "output": [[2]]}]})" + "\n");
    write_file(w / "tasks_key.json", R"({"tasks": 7})");
    const auto prep = run_command(crsm_train("prepare --input " + work->str("short.txt") + " --output " +
                                             work->str("short_data")));
    ASSERT_EQ(prep.status, 0) << prep.output;
  }

  static TempDir* work;
};
TempDir* BadInput::work = nullptr;

// Valid but for the flag each row adds (refused before any work, so no step runs).
const std::string kTrain = "train --config {CFG} --data {W}/data --checkpoint-dir {W}/new_run --no-value-loss ";

TEST_F(BadInput, Commands) {
  expect_rows({
      {"", 2, "usage: crsm_train COMMAND"},
      {"fly", 2, "unknown command 'fly'"},
      {"train --bogus-flag 1 --data {W}/data --checkpoint-dir {W}/new_run", 2, "bogus-flag"},
  });
}

TEST_F(BadInput, Prepare) {
  const std::string out = " --output {W}/new_data";
  expect_rows({
      {"prepare --input {W}/empty.txt" + out, 2, "empty.txt: input is empty"},
      {"prepare --input {W}/missing.txt" + out, 2, "missing.txt"},
      {"prepare --input {W}/a_directory" + out, 2, "a_directory"},
      {"prepare --input {W}/corpus.txt --output {W}/data", 2, "already exists and is not empty"},
      {"prepare" + out, 2, "--input is required"},
      {"prepare --input {W}/corpus.txt", 2, "--output is required"},
      {"prepare --input {W}/corpus.txt --input-format jsonl" + out, 2, "{W}/corpus.txt line 1: expected a JSON object"},
      {"prepare --input {W}/corpus.txt --input-format csv" + out, 2, "--input-format csv: expected one of"},
      {"prepare --input {W}/corpus.txt --json-key body" + out, 2, "--json-key applies to --input-format jsonl (this run reads text)"},
      {"prepare --input {W}/corpus.txt --input-format jsonl --json-key ''" + out, 2, "--json-key \"\": expected a field name"},
      {"prepare --input {W}/corpus.txt --output ''", 2, "--output \"\": expected a non-empty path"},
      {"prepare --input {W}/corpus.txt --output {W}/deep/er/data --val-fraction 0", 2, "--val-fraction 0: expected a number in (0, 1)"},
      {"prepare --input {W}/corpus.txt" + out + " --val-fraction 1", 2, "--val-fraction 1: expected"},
      {"prepare --input {W}/corpus.txt" + out + " --val-fraction nan", 2, "--val-fraction nan: expected"},
      {"prepare --input {W}/corpus.txt" + out + " --vocab-size -1", 2, "--vocab-size -1: expected an integer"},
      {"prepare --input {W}/corpus.txt" + out + " --vocab-size 300", 2, "the byte tokenizer has vocab_size 258"},
      {"prepare --input {W}/corpus.txt" + out + " --tokenizer sentencepiece", 2, "needs a vocab_size > 0"},
      {"prepare --input {W}/corpus.txt" + out + " --tokenizer {W}/no.model", 2, "no.model"},
      {"prepare --input {W}/corpus.txt --output {W}/deep/er/data --tokenizer sentencepiece --vocab-size 5000000", 2,
       "{W}/corpus.txt (its train part)"},
      {"prepare --input {W}/corpus.txt --output {W}/existing.safetensors", 2,
       "--output {W}/existing.safetensors: is a file (expected a directory)"},
      {"prepare --input {W}/corpus.txt --output {W}/existing.safetensors/data", 2,
       "--output {W}/existing.safetensors/data: {W}/existing.safetensors is a file, not a directory"},
  });
}

TEST_F(BadInput, TrainOptions) {
  expect_rows({
      {kTrain + "--max-steps -5", 2, "--max-steps -5: expected an integer >= 1"},
      {kTrain + "--max-steps 0", 2, "--max-steps 0: expected"},
      {kTrain + "--set nokey=1", 2, "--set nokey=1: expected KEY=VALUE with KEY a config key ('nokey' is not a config key (keys: vocab_size,"},
      {kTrain + "--set batch_size=0", 2, "--set batch_size=0: expected KEY=VALUE with KEY a config key (batch_size takes an integer"},
      {kTrain + "--set batch_size", 2, "--set batch_size: expected KEY=VALUE with KEY a config key (no '=' between a key and its value)"},
      {kTrain + "--set tie_embeddings=maybe", 2, "(tie_embeddings takes true or false)"},
      {kTrain + "--set batch_size=8 --batch-size 16", 2, "--set batch_size=8 and --batch-size 16 both set batch_size: give one"},
      {kTrain + "--set d_model=30 --set num_layers=2 --set dt_rank=100", 2, "dt_rank"},
      {kTrain + "--max-steps 2.5", 2, "--max-steps 2.5: expected"},
      {kTrain + "--save-every -1", 2, "--save-every -1: expected an integer >= 0"},
      {kTrain + "--keep-last -2", 2, "--keep-last -2: expected"},
      {kTrain + "--eval-every -3", 2, "--eval-every -3: expected"},
      {kTrain + "--warmup-steps -7", 2, "--warmup-steps -7: expected an integer >= 0 or \"auto\""},
      {kTrain + "--eval-batches -4", 2, "--eval-batches -4: expected"},
      {kTrain + "--threads -3", 2, "--threads -3: expected"},
      {kTrain + "--epochs -2", 2, "--epochs -2: expected"},
      {kTrain + "--epochs 0", 2, "nothing to do"},
      {kTrain + "--weight-decay -5", 2, "--weight-decay -5: expected a number in [0, 10]"},
      {kTrain + "--grad-clip -1", 2, "--grad-clip -1: expected a finite number >= 0"},
      {kTrain + "--lr nan", 2, "--lr nan: expected a finite number > 0"},
      {kTrain + "--lr 0", 2, "--lr 0: expected"},
      {kTrain + "--lr inf", 2, "--lr inf: expected"},
      {kTrain + "--min-lr-ratio 2", 2, "--min-lr-ratio 2: expected a number in [0, 1]"},
      {kTrain + "--grad-accum 0", 2, "--grad-accum 0: expected"},
      {kTrain + "--grad-accum 5", 2, "--grad-accum 5 must divide the 12 rows"},
      {kTrain + "--value-weight -1", 2, "--value-weight -1: expected"},
      {kTrain + "--log-every 0", 2, "--log-every 0: expected"},
      {kTrain + "--batch-size 0", 2, "--batch-size 0: expected an integer from 1"},
      {kTrain + "--batch-size 2.5", 2, "--batch-size 2.5: expected"},
      {kTrain + "--seq-len 8000", 2, "--seq-len 8000 is longer than the validation split"},
      {kTrain + "--seq-len 0", 2, "--seq-len 0: expected"},
      {kTrain + "--vocab-size 300", 2, "the model's vocab_size is 300"},
      {kTrain + "--vocab-size 1", 2, "--vocab-size 1: expected an integer from 2"},
      {kTrain + "--seed -1", 2, "--seed -1: expected an integer >= 0"},
      {kTrain + "--device gpu", 2, "--device gpu: expected \"cpu\", \"cuda\" or \"cuda:N\""},
      {kTrain + "--device cuda:99999", 2, "--device cuda:99999: expected"},
      {kTrain + "--eval-batches 99999999999", 2, "--eval-batches 99999999999: expected"},
      {kTrain + "--zero-stage 4", 2, "--zero-stage 4: expected an integer from 0 to 3"},
      {kTrain + "--no-prefetch", 2, "--no-prefetch applies to --zero-stage 3 only"},
      {kTrain + "--no-prefetch --zero-stage 2", 2, "--no-prefetch applies to --zero-stage 3 only (this run has zero stage 2)"},
      {kTrain + "--no-batch-split=1", 2, "option '--no-batch-split' does not take any arguments"},
      {kTrain + "--bucket-mb 0", 2, "--bucket-mb 0: expected"},
      {kTrain + "--collective-timeout -1", 2, "--collective-timeout -1: expected an integer from 0"},
      {kTrain + "--precision fp16", 2, "--precision fp16: expected one of fp32, bf16"},
      {"train --config {CFG} --checkpoint-dir {W}/new_run", 2, "--data is required"},
      {"train --config {CFG} --data {W}/data", 2, "--checkpoint-dir is required"},
      {"train --config {CFG} --data {W}/data --checkpoint-dir ''", 2, "--checkpoint-dir \"\": expected a non-empty path"},
  });
}

TEST_F(BadInput, TrainConfigs) {
  const std::string rest = " --data {W}/data --checkpoint-dir {W}/new_run --threads 1 --max-steps 2";
  expect_rows({
      {"train --config {W}/missing.json" + rest, 2, "{W}/missing.json: cannot be opened"},
      {"train --config {W}/a_directory" + rest, 2, "{W}/a_directory: not a regular file"},
      {"train --config {W}/malformed.json" + rest, 2, "{W}/malformed.json: malformed JSON"},
      {"train --config {W}/unknown.json" + rest, 2, "unknown key 'd_modle'"},
      {"train --config {W}/wrong_type.json" + rest, 2, "key 'dropout': expected a number in [0, 1), got \"high\""},
      {"train --config {W}/negative_lr.json" + rest, 2, "key 'lr': expected a finite number > 0, got -1"},
      {"train --config {W}/dt_rank.json" + rest, 2, "key 'dt_rank'"},
      {"train --config {W}/huge.json" + rest + " --no-value-loss", 2, "it is large because of d_state = 16777216"},
  });
}

TEST_F(BadInput, TrainDataAndRunDirectories) {
  need_run();
  const std::string base = "train --config {CFG} --threads 1 --no-value-loss --eval-every 0 --max-steps 3 ";
  expect_rows({
      {base + "--data {W}/nothing --checkpoint-dir {W}/new_run", 2, "--data {W}/nothing: no such prepared directory or text file"},
      {base + "--data {W}/cut_data --checkpoint-dir {W}/new_run", 2, "shard train_000.bin is truncated"},
      {base + "--data {W}/cut_index --checkpoint-dir {W}/new_run", 2, "{W}/cut_index/index.json: malformed JSON"},
      {base + "--data {W}/vocab300 --checkpoint-dir {W}/new_run", 2, "{W}/vocab300/index.json: \"vocab_size\" is 300"},
      {base + "--data {W}/short_data --checkpoint-dir {W}/new_run", 2, "--seq-len 32 is longer than the validation split"},
      {base + "--data {W}/empty.txt --checkpoint-dir {W}/new_run", 2, "empty.txt: input is empty"},
      {base + "--data {W}/data --checkpoint-dir {W}/run", 2, "already holds checkpoints"},
      {base + "--data {W}/data --checkpoint-dir {W}/died", 2, "holds an earlier run's metrics.jsonl but no checkpoint"},
      {base + "--data {W}/data --checkpoint-dir {W}/new_run --resume {W}/no_such_run", 2, "--resume {W}/no_such_run: no such checkpoint"},
      {base + "--data {W}/data --checkpoint-dir {W}/new_run --resume {W}/damaged_run/checkpoints/step_00000002", 2,
       "damaged checkpoint"},
      {base + "--data {W}/data --checkpoint-dir {W}/new_run --resume {W}/empty_dir", 2, "holds no complete checkpoint"},
      {base + "--data {W}/data --checkpoint-dir {W}/run/finetune --resume {W}/run", 2,
       "--checkpoint-dir {W}/run/finetune: inside the run directory {W}/run this command reads"},
      {base + "--data {W}/data --checkpoint-dir {W}/run/checkpoints/step_00000002/ft --resume {W}/run/checkpoints/step_00000002",
       2, "inside the checkpoint {W}/run/checkpoints/step_00000002"},
      {base + "--data {W}/data --checkpoint-dir {W}/existing.safetensors", 2,
       "--checkpoint-dir {W}/existing.safetensors: is a file (expected a directory)"},
  });
}

// Under mpirun an error every rank meets (a flag; rank 0 failing to prepare the corpus
// the others wait for) ends every rank together: no abort, no per-rank copies.
TEST_F(BadInput, UnderMpirun) {
  const std::string mpirun = std::string(CRSM_MPIEXEC) + " --allow-run-as-root --oversubscribe -np 2 ";
  expect_rows({{kTrain + "--max-steps -5", 2, "--max-steps -5: expected an integer >= 1"},
               {"train --config {CFG} --data {W}/empty.txt --checkpoint-dir {W}/new_run", 2, "empty.txt: input is empty"}},
              mpirun);
  // A collection made by one rank, rerun by two: refused before rank 1 collects anything.
  need_dynamics();
  expect_rows({{"distill --model-path {W}/run --output-path {W}/dyn --data {W}/data --num-samples 300 --val-samples 100 "
                "--collect-only",
                2,
                "{W}/dyn/transitions/train/rank00000.h5: collected by 1 rank, and rank r's file holds rank r's windows: "
                "continue it with 1 rank (this run has 2)"}},
              mpirun);
  const auto r = run_command("timeout 120 " + mpirun +
                             crsm_train(substitute("train --config {CFG} --data {W}/empty.txt --checkpoint-dir {W}/new_run")));
  const auto at = r.output.find("input is empty");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("input is empty", at + 1), std::string::npos) << "said once, by rank 0:\n" << r.output;
}

// Started by torchrun's variables without an MPI launcher: refused before any work, naming
// the launchers that work; WORLD_SIZE=1 is one process and runs.
TEST_F(BadInput, LaunchedByTorchrunWithoutMpi) {
  expect_rows({{kTrain + "--max-steps 1", 2,
                "crsm_train: started as one of WORLD_SIZE=2 processes (RANK=1: torchrun or a launcher like it) but not "
                "by an MPI launcher; crsm_train's ranks find each other through MPI, so each copy would run alone as "
                "world size 1 on the same run directory. Launch it with mpirun -np 2 crsm_train ..., or srun "
                "--mpi=pmix crsm_train ... under Slurm"}},
              "env WORLD_SIZE=2 RANK=1 LOCAL_RANK=1 ");
  const auto one = run_command("env WORLD_SIZE=1 RANK=0 " + crsm_train("memory --config " + source_path("configs/tiny.json")));
  EXPECT_EQ(one.status, 0) << one.output;
}

TEST_F(BadInput, CudaWithoutAGpu) {
  if (run_command("nvidia-smi -L").status == 0) GTEST_SKIP() << "this machine has a GPU";
  need_run();
  const std::string mpirun = std::string(CRSM_MPIEXEC) + " --allow-run-as-root --oversubscribe -np 2 ";
  expect_rows({
      {kTrain + "--device cuda", 2, "--device cuda: no CUDA device is available"},
      {"generate --model {W}/run --device cuda", 2, "--device cuda: no CUDA device is available"},
  });
  expect_rows({{kTrain + "--device cuda", 2, "--device cuda: no CUDA device is available"}}, mpirun);
}

TEST_F(BadInput, Generate) {
  need_run();
  const std::string gen = "generate --model {W}/run ";
  expect_rows({
      {gen + "--temperature nan", 2, "--temperature nan: expected a number in [0, 1000]"},
      {gen + "--temperature -1", 2, "--temperature -1: expected"},
      {gen + "--top-k -3", 2, "--top-k -3: expected an integer"},
      {gen + "--top-p nan", 2, "--top-p nan: expected a number in (0, 1]"},
      {gen + "--top-p 0", 2, "--top-p 0: expected"},
      {gen + "--max-length -1", 2, "--max-length -1: expected"},
      {gen + "--seed -1", 2, "--seed -1: expected"},
      {gen + "--threads -1", 2, "--threads -1: expected"},
      {gen + "--device tpu", 2, "--device tpu: expected"},
      {gen + "--sync", 2, "--sync applies to deliberative generation: add --deliberate"},
      {gen + "--stats", 2, "--stats applies to deliberative generation"},
      {gen + "--no-dynamics", 2, "--no-dynamics applies to deliberative generation"},
      {gen + "--exact", 2, "--exact applies to deliberative generation"},
      {gen + "--deliberate --simulations 0", 2, "--simulations 0: expected an integer"},
      {gen + "--deliberate --c-puct -1", 2, "--c-puct -1: expected"},
      {gen + "--deliberate --root-choice best", 2, "--root-choice best: expected one of"},
      {gen + "--deliberate --search-top-k 0", 2, "--search-top-k 0: expected"},
      {gen + "--deliberate --leaf-batch 0", 2, "--leaf-batch 0: expected"},
      {gen + "--deliberate --injection-rate 1.5", 2, "--injection-rate 1.5: expected a number in [0, 1]"},
      {gen + "--deliberate --delta-decay nan", 2, "--delta-decay nan: expected"},
      {gen + "--deliberate --max-lag -1", 2, "--max-lag -1: expected"},
      {gen + "--deliberate --state-cache-mb 0", 2, "--state-cache-mb 0: expected"},
      {gen + "--deliberate --tree-mb 0", 2, "--tree-mb 0: expected"},
      {gen + "--deliberate --sync --simulations 16777216", 2,
       "--simulations 16777216 with --search-top-k 16 can grow one search's tree to"},
      {gen + "--deliberate --simulations 100000 --tree-mb 8", 2, "more than --tree-mb 8 allows"},
      {"generate --model {W}/empty_dir", 2, "--model {W}/empty_dir: holds no complete checkpoint"},
      {"generate --model {W}/damaged_run/checkpoints/step_00000002", 2, "damaged checkpoint"},
      {"generate --prompt x", 2, "--model is required"},
      {"generate --model auto", 2, "--model auto: holds no complete checkpoint"},
  });
}

TEST_F(BadInput, Export) {
  need_run();
  const std::string ckpt = "{W}/run/checkpoints/step_00000002";
  expect_rows({
      {"export --checkpoint {W}/run --output " + ckpt + "/model.safetensors", 2, "inside the checkpoint " + ckpt},
      {"export --checkpoint {W}/run --output " + ckpt + "/model.safetensors --force", 2, "inside the checkpoint"},
      {"export --checkpoint {W}/run --output {W}/run/metrics.jsonl --force", 2,
       "inside the run directory {W}/run this command reads, in place of the run's own files"},
      {"export --checkpoint {W}/run --output {W}/run/checkpoints/exported.safetensors", 2, "in place of the run's own files"},
      {"export --checkpoint {W}/run --output {W}/existing.safetensors", 2, "already exists; pass --force"},
      {"export --checkpoint {W}/run --output {W}/a_directory", 2, "is a directory"},
      {"export --checkpoint {W}/run --output ''", 2, "--output \"\": expected"},
      {"export --checkpoint {W}/empty_dir --output {W}/x.safetensors", 2, "--checkpoint {W}/empty_dir: holds no complete checkpoint"},
      {"export --checkpoint {W}/run", 2, "--output is required"},
      {"export --checkpoint auto --output {W}/x.safetensors", 2, "--checkpoint auto: holds no complete checkpoint"},
      {"export --checkpoint {W}/run --output {W}/x.safetensors --format onnx", 2, "--format onnx: expected"},
      {"export --checkpoint {W}/run --output {W}/hf_out --format hf", 2,
       "has no Hugging Face Mamba form: its blocks have the feed-forward branch (d_ffn = 64)"},
      {"export --checkpoint {W}/run --output {W}/existing.safetensors --format hf", 2,
       "--output {W}/existing.safetensors: is a file (expected a directory)"},
  });
}

TEST_F(BadInput, Plot) {
  need_run();
  expect_rows({
      {"plot {W}/run --output {W}/run/metrics.jsonl", 2, "--output {W}/run/metrics.jsonl: expected a file name ending in .svg"},
      {"plot {W}/run --output {W}/run/checkpoints/loss.svg", 2, "inside the run directory {W}/run"},
      {"plot {W}/run --output {W}/loss.png", 2, "--output {W}/loss.png: expected a file name ending in .svg"},
      {"plot {W}/run --output {W}/existing.svg", 2, "already exists; pass --force"},
      {"plot {W}/empty_dir --output {W}/x.svg", 2, "{W}/empty_dir/metrics.jsonl: cannot be opened"},
      {"plot {W}/bad_metrics --output {W}/x.svg", 2, "{W}/bad_metrics/metrics.jsonl:2: malformed JSON"},
      {"plot --output {W}/x.svg", 2, "--run is required"},
      {"plot {W}/run {W}/empty_dir --output {W}/new/dir/x.svg", 2, "empty_dir/metrics.jsonl"},
  });
}

TEST_F(BadInput, Memory) {
  const std::string memory = "memory --config {CFG} ";
  expect_rows({
      {memory + "--world ''", 2, "--world \"\": expected integers from 1"},
      {memory + "--world 2.5", 2, "--world 2.5: expected"},
      {memory + "--world 0,8", 2, "--world 0,8: expected"},
      {memory + "--world 1,,8", 2, "--world 1,,8: expected"},
      {memory + "--bucket-mb nan", 2, "--bucket-mb nan: expected"},
      {memory + "--micro-batch 0", 2, "--micro-batch 0: expected"},
      {memory + "--gpu-gib 0,80", 2, "--gpu-gib 0,80: expected"},
      {"memory --world 8", 2, "--config is required"},
      {"memory --config {W}/uncountable.json", 2, "more than this table lays out"},
  });
}

TEST_F(BadInput, Distill) {
  need_dynamics();
  const std::string out = "distill --model-path {W}/run --output-path {W}/new_dist ";
  const std::string d = out + "--data {W}/data ";
  expect_rows({
      {d + "--num-samples 0", 2, "--num-samples 0: expected an integer"},
      {d + "--val-samples 0", 2, "--val-samples 0: expected"},
      {d + "--epochs -1", 2, "--epochs -1: expected"},
      {d + "--epochs 0", 2, "nothing to train: --epochs"},
      {d + "--max-steps 0", 2, "--max-steps 0: expected"},
      {d + "--lr 0", 2, "--lr 0: expected"},
      {d + "--batch-size 0", 2, "--batch-size 0: expected"},
      {d + "--arch lstm", 2, "--arch lstm: expected"},
      {d + "--hidden 0", 2, "--hidden 0: expected"},
      {d + "--seq-len 0", 2, "--seq-len 0: expected"},
      {d + "--dtype float64", 2, "--dtype float64: expected"},
      {d + "--compression lzf", 2, "--compression lzf: expected"},
      {d + "--chunk-rows 0", 2, "--chunk-rows 0: expected"},
      {d + "--vocab-size 300", 2, "--vocab-size 300 disagrees with the backbone"},
      {d + "--d-model 64", 2, "--d-model 64 disagrees with the backbone"},
      {d + "--num-layers 9", 2, "--num-layers 9 disagrees with the backbone"},
      {d + "--seed -1", 2, "--seed -1: expected"},
      {d + "--log-every 0", 2, "--log-every 0: expected"},
      {d + "--save-every -1", 2, "--save-every -1: expected"},
      {d + "--keep-last -1", 2, "--keep-last -1: expected"},
      {d + "--threads -1", 2, "--threads -1: expected"},
      {d + "--collective-timeout -1", 2, "--collective-timeout -1: expected"},
      {d + "--config {W}/unknown.json", 2, "unknown key 'd_modle'"},
      {d + "--config {W}/d64.json", 2, "--config {W}/d64.json: key 'd_model' is 64, but the backbone"},
      {d + "--transitions {W}/dyn/transitions", 2, "give exactly one of --data"},
      {out, 2, "give exactly one of --data"},
      {"distill --model-path {W}/empty_dir --output-path {W}/new_dist --data {W}/data", 2,
       "--model-path {W}/empty_dir: holds no complete checkpoint"},
      {"distill --model-path {W}/run --output-path '' --data {W}/data", 2, "--output-path \"\": expected"},
      {"distill --output-path {W}/new_dist --data {W}/data", 2, "--model-path is required"},
      {out + "--data {W}/short_data", 2, "--data {W}/short_data: 2000 transitions of the train split need"},
      {out + "--data {W}/cut_data", 2, "train_000.bin is truncated"},
      {out + "--transitions {W}/empty_dir", 2, "{W}/empty_dir/train.h5: no such transition file"},
      {out + "--transitions {W}/dyn/transitions --collect-only", 2, "--collect-only and --transitions exclude"},
      // Outputs inside what is read.
      {"distill --model-path {W}/run --output-path {W}/run/dyn --data {W}/data", 2,
       "--output-path {W}/run/dyn: inside the run directory {W}/run this command reads"},
      {"distill --model-path {W}/run --output-path {W}/run/checkpoints --data {W}/data", 2, "inside the run directory {W}/run"},
      {"distill --model-path {W}/run --output-path {W}/run/checkpoints/step_00000002/dyn --data {W}/data", 2,
       "inside the checkpoint {W}/run/checkpoints/step_00000002"},
      {"distill --model-path {W}/run/checkpoints/step_00000002 --output-path {W}/run --data {W}/data", 2,
       "--output-path {W}/run: inside the run directory {W}/run"},
      {"distill --model-path {W}/run --output-path {W}/dyn/transitions/again --transitions {W}/dyn/transitions", 2,
       "inside the transition collection {W}/dyn/transitions"},
      {"distill --model-path {W}/run --output-path {W}/existing.safetensors --data {W}/data", 2,
       "--output-path {W}/existing.safetensors: is a file (expected a directory)"},
      // Sizes refused before any work.
      {d + "--chunk-rows 16777216", 2,
       "--chunk-rows 16777216: a chunk of that many rows of [2, 32] float32 states is over HDF5's limit of 4 GiB per chunk: "
       "at most 16777215 rows"},
      {d + "--hidden 16777216", 2, "--arch shared --hidden 16777216: training the shared dynamics model (hidden 16777216"},
      // An earlier distillation continued with other settings: said, nothing touched.
      {"distill --model-path {W}/run --output-path {W}/dyn --data {W}/data --num-samples 300 --val-samples 100 --epochs 1 "
       "--batch-size 64 --arch per_layer", 2,
       "{W}/dyn holds dynamics training of a shared model of hidden width 32"},

      {out + "--transitions {W}/cut_transitions", 2, "{W}/cut_transitions/train/rank00000.h5: not a readable HDF5 file"},
      {"distill --model-path {W}/run/checkpoints/step_00000001 --output-path {W}/new_dist --transitions {W}/dyn/transitions",
       2, "{W}/dyn/transitions/train.h5: field 'backbone_sha256'"},
      // Collecting into an earlier collection of another plan: refused, nothing touched.
      {"distill --model-path {W}/run --output-path {W}/dyn --data {W}/data --num-samples 400 --collect-only", 2,
       "{W}/dyn/transitions/train/rank00000.h5: field 'plan'"},
  });
}

TEST_F(BadInput, AssembleAndCheckDynamics) {
  need_dynamics();
  const std::string a = "assemble --backbone {W}/run --dynamics {W}/dyn ";
  const std::string c = "check-dynamics --model {W}/full --data {W}/data ";
  expect_rows({
      {"assemble --backbone {W}/empty_dir --dynamics {W}/dyn --output {W}/new_full", 2,
       "--backbone {W}/empty_dir: holds no complete checkpoint"},
      {"assemble --backbone {W}/run --dynamics {W}/existing.safetensors --output {W}/new_full", 2, "{W}/existing.safetensors"},
      {"assemble --backbone {W}/run --dynamics {W}/missing.safetensors --output {W}/new_full", 2, "{W}/missing.safetensors"},
      {"assemble --backbone {W}/run/checkpoints/step_00000001 --dynamics {W}/dyn --output {W}/new_full", 2,
       "was distilled from the backbone with SHA-256"},
      {a + "--output {W}/full", 2, "--output {W}/full already holds checkpoints"},
      {a + "--output ''", 2, "--output \"\": expected"},
      {"assemble --dynamics {W}/dyn --output {W}/new_full", 2, "--backbone is required"},
      {a + "--output {W}/run/checkpoints/step_00000002/full", 2,
       "--output {W}/run/checkpoints/step_00000002/full: inside the checkpoint {W}/run/checkpoints/step_00000002"},
      {"assemble --backbone {W}/full --dynamics {W}/dyn --output {W}/full/checkpoints/step_00000002/again", 2,
       "inside the checkpoint {W}/full/checkpoints/step_00000002"},
      {a + "--output {W}/run/full", 2, "inside the run directory {W}/run"},
      {a + "--output {W}/dyn/full", 2, "--output {W}/dyn/full: inside the run directory {W}/dyn"},
      {"assemble --backbone {W}/run --dynamics {W}/dyn/dynamics.safetensors --output {W}/dyn/full", 2,
       "inside the run directory {W}/dyn"},
      {a + "--output {W}/existing.safetensors", 2, "--output {W}/existing.safetensors: is a file (expected a directory)"},
      // A damaged dynamics file: the checkpoint and the file are named.
      {"check-dynamics --model {W}/cut_full --data {W}/data", 2,
       "skipping damaged checkpoint {W}/cut_full/checkpoints/step_00000002: dynamics.safetensors has"},
      {"generate --model {W}/cut_full", 2, "{W}/cut_full/checkpoints/step_00000002: dynamics.safetensors has"},
      {c + "--samples 0", 2, "--samples 0: expected"},
      {c + "--seq-len 2", 2, "--seq-len 2: expected"},
      {c + "--seed -1", 2, "--seed -1: expected"},
      {c + "--threads -1", 2, "--threads -1: expected"},
      {"check-dynamics --model {W}/run --data {W}/data", 2, "has no dynamics model"},
      {"check-dynamics --model {W}/empty_dir --data {W}/data", 2, "--model {W}/empty_dir: holds no complete checkpoint"},
      {"check-dynamics --model {W}/full --data {W}/short_data --samples 100000", 2, "--data {W}/short_data"},
      {"check-dynamics --model {W}/full", 2, "--data is required"},
  });
}

TEST_F(BadInput, PrepareArc) {
  const std::string arc = "prepare-arc --output {W}/new_arc ";
  expect_rows({
      {arc + "--tasks 0", 2, "--tasks 0: expected an integer"},
      {arc + "--train-tasks 0", 2, "--train-tasks 0: expected an integer"},
      {arc + "--seed -1", 2, "--seed -1: expected an integer"},
      {arc + "--families gravity", 2, "--families gravity: expected one of identity"},
      {arc + "--min-size 1", 2, "--min-size 1: expected an integer"},
      {arc + "--max-size 31", 2, "--max-size 31: expected an integer"},
      {arc + "--min-size 6 --max-size 4", 2, "expected 2 <= min-size <= max-size <= 30"},
      {arc + "--train-pairs 0", 2, "--train-pairs 0: expected an integer"},
      {arc + "--families scaling --max-size 3 --tasks 20", 2, "cannot draw distinct inputs of sides 1 to 1 for family scaling"},
      {"prepare-arc --output {W}/data", 2, "--output {W}/data: exists and is not an empty directory"},
      {"prepare-arc --output {W}/existing.safetensors", 2, "--output {W}/existing.safetensors: is a file (expected a directory)"},
      {"prepare-arc --tasks 3", 2, "--output is required"},
  });
}

TEST_F(BadInput, Eval) {
  need_run();
  const std::string ev = "eval --model {W}/run --tasks {W}/task.json --output {W}/new_eval.json ";
  expect_rows({
      {ev + "--modes beams", 2, "--modes beams: expected a comma-separated list of greedy, mcts, mcts+inject"},
      {ev + "--modes beam@0", 2, "(decoding mode 'beam@0': N must be an integer from 1 to 4096)"},
      {ev + "--root-choice q", 2, "--root-choice q: expected one of"},
      {ev + "--modes greedy,beam-row@x", 2, "(decoding mode 'beam-row@x': N must be an integer from 1 to 4096)"},
      {ev + "--modes beam,beam@4", 2, "(duplicate decoding mode 'beam@4')"},
      {ev + "--modes greedy,greedy", 2, "(duplicate decoding mode 'greedy')"},
      {ev + "--modes vote@0", 2, "(decoding mode 'vote@0': N must be an integer from 1 to 4096)"},
      {ev + "--modes greedy@2", 2, "(decoding mode 'greedy' takes no @N)"},
      {ev + "--samples 0", 2, "--samples 0: expected"},
      {ev + "--temperature 0", 2, "--temperature 0: expected"},
      {ev + "--budget 0", 2, "--budget 0: expected"},
      {ev + "--budget 4 --modes greedy,vote@8", 2, "--budget 4 sets every sampling mode's N: --modes greedy,vote@8 must not give one with @N"},
      {ev + "--simulations 16777216", 2, "--simulations 16777216 with --search-top-k 16 can grow one search's tree"},
      {ev + "--tree-mb 0", 2, "--tree-mb 0: expected"},
      {ev + "--max-tasks -1", 2, "--max-tasks -1: expected"},
      {ev + "--max-prompt-tokens 0", 2, "--max-prompt-tokens 0: expected"},
      {ev + "--max-new-tokens 0", 2, "--max-new-tokens 0: expected"},
      {ev + "--simulations 0", 2, "--simulations 0: expected"},
      {ev + "--c-puct -1", 2, "--c-puct -1: expected"},
      {ev + "--search-top-k 0", 2, "--search-top-k 0: expected"},
      {ev + "--leaf-batch 0", 2, "--leaf-batch 0: expected"},
      {ev + "--injection-rate 2", 2, "--injection-rate 2: expected"},
      {ev + "--state-cache-mb 0", 2, "--state-cache-mb 0: expected"},
      {ev + "--device tpu", 2, "--device tpu: expected"},
      {ev + "--threads -1", 2, "--threads -1: expected"},
      {ev + "--collective-timeout -1", 2, "--collective-timeout -1: expected"},
      {"eval --model {W}/run --tasks {W}/missing.json", 2, "{W}/missing.json"},
      {"eval --model {W}/run --tasks {W}/ragged.jsonl", 2, "{W}/ragged.jsonl line 2: field train[0].input[1]: ragged grid"},
      {"eval --model {W}/run --tasks {W}/corpus.txt", 2, "{W}/corpus.txt: expected a directory of <task id>.json files"},
      {"eval --model {W}/run --tasks {W}/task.json {W}/task.json", 2, "--tasks {W}/task.json: given twice"},
      {"eval --model {W}/run --tasks {W}/task.json --output {W}/existing.svg", 2, "--output {W}/existing.svg: already exists; pass --force"},
      {"eval --model {W}/run --tasks {W}/task.json --output {W}/run/checkpoints/step_00000002/eval.json", 2, "inside the checkpoint"},
      {"eval --model {W}/empty_dir --tasks {W}/task.json", 2, "--model {W}/empty_dir: holds no complete checkpoint"},
      {"eval --tasks {W}/task.json", 2, "--model is required"},
      {"eval --model {W}/run", 2, "--tasks is required"},
  });
}

// A rollout collection of the run's last checkpoint ({W}/ro), and a copy whose rank file
// is cut in half ({W}/cut_ro).
TEST_F(BadInput, Rollouts) {
  need_run();
  if (!fs::exists(work->path() / "cut_ro")) {
    const auto r = run_command(crsm_train("rollouts --model " + work->str("run") + " --tasks " + work->str("task.json") +
                                          " --output-path " + work->str("ro") + " --samples 2 --threads 1"));
    ASSERT_EQ(r.status, 0) << r.output;
    fs::copy(work->path() / "ro", work->path() / "cut_ro", fs::copy_options::recursive);
    const auto rank_file = work->path() / "cut_ro" / "rollouts" / "rank00000.h5";
    fs::resize_file(rank_file, fs::file_size(rank_file) / 2);
  }
  const std::string ro = "rollouts --model {W}/run --tasks {W}/task.json --output-path {W}/new_rollouts ";
  expect_rows({
      {ro + "--samples 0", 2, "--samples 0: expected"},
      {ro + "--samples 4097", 2, "--samples 4097: expected"},
      {ro + "--temperature 0", 2, "--temperature 0: expected"},
      {ro + "--compression lzf", 2, "--compression lzf: expected"},
      {ro + "--chunk-rows 0", 2, "--chunk-rows 0: expected"},
      {ro + "--max-tasks -1", 2, "--max-tasks -1: expected"},
      {ro + "--max-prompt-tokens 0", 2, "--max-prompt-tokens 0: expected"},
      {ro + "--max-new-tokens 0", 2, "--max-new-tokens 0: expected"},
      {ro + "--device tpu", 2, "--device tpu: expected"},
      {ro + "--threads -1", 2, "--threads -1: expected"},
      {ro + "--max-new-tokens 16777216", 2, "--chunk-rows 64: rows of"},
      {ro + "--max-new-tokens 16777216 --samples 2", 2, "answer tokens (--max-new-tokens) fit at most 63 to an HDF5 chunk of 4 GiB"},
      {"rollouts --model {W}/run --tasks {W}/task.json", 2, "--output-path is required"},
      {"rollouts --model {W}/run --output-path {W}/new_rollouts", 2, "--tasks is required"},
      {"rollouts --tasks {W}/task.json --output-path {W}/new_rollouts", 2, "--model is required"},
      {"rollouts --model {W}/empty_dir --tasks {W}/task.json --output-path {W}/new_rollouts", 2,
       "--model {W}/empty_dir: holds no complete checkpoint"},
      {"rollouts --model {W}/run --tasks {W}/ragged.jsonl --output-path {W}/new_rollouts", 2, "{W}/ragged.jsonl line 2"},
      {"rollouts --model {W}/run --tasks {W}/task.json --output-path {W}/run/checkpoints/step_00000002/ro", 2,
       "inside the checkpoint"},
      {"rollouts --model {W}/run --tasks {W}/task.json --output-path {W}/run/ro", 2,
       "--output-path {W}/run/ro: inside the run directory {W}/run"},
      {"rollouts --model {W}/run --tasks {W}/task.json --output-path {W}/existing.svg", 2, "--output-path {W}/existing.svg"},
      {"rollouts --model {W}/run --tasks {W}/task.json --output-path {W}/cut_ro --samples 2", 2,
       "{W}/cut_ro/rollouts/rank00000.h5: not a readable HDF5 file"},
      {"rollouts --model {W}/run --tasks {W}/task.json --output-path {W}/ro --samples 3", 2,
       "{W}/ro/rollouts/rank00000.h5: field 'samples' is 2, but this collection has 3"},
  });
}

// Outcome values (value_target outcome): the heads of a trained backbone, on rollouts.
TEST_F(BadInput, OutcomeValues) {
  need_run();
  if (!fs::exists(work->path() / "few_rollouts")) {
    const auto r = run_command(crsm_train("rollouts --model " + work->str("run") + " --tasks " + work->str("task.json") +
                                          " --output-path " + work->str("few_rollouts") + " --samples 2 --threads 1"));
    ASSERT_EQ(r.status, 0) << r.output;
    fs::copy(work->path() / "few_rollouts" / "rollouts" / "rank00000.h5", work->path() / "cut_rollouts.h5");
    fs::resize_file(work->path() / "cut_rollouts.h5", fs::file_size(work->path() / "cut_rollouts.h5") / 2);
  }
  const std::string outcome = "train --config {CFG} --checkpoint-dir {W}/new_run --value-target outcome ";
  const std::string rollouts = "--rollouts {W}/few_rollouts/rollouts.h5 ";
  expect_rows({
      {kTrain + "--value-target bogus", 2, "--value-target bogus: expected"},
      {kTrain + "--set value_target=bogus", 2, "value_target"},
      {kTrain + "--set root_choice=most", 2, "root_choice"},
      {kTrain + "--set root_choice=gumbel", 2, "root_choice"},
      {kTrain + "--set normalize_q=maybe", 2, "normalize_q"},
      {kTrain + "--set reuse_subtree=1.5", 2, "reuse_subtree"},
      {outcome + "--resume {W}/run", 2, "value_target outcome needs --rollouts"},
      {kTrain + rollouts, 2, "--rollouts {W}/few_rollouts/rollouts.h5 is read with --value-target outcome only"},
      {outcome + rollouts + "--data {W}/data --resume {W}/run", 2,
       "--data {W}/data: value_target outcome learns from --rollouts, not text"},
      {outcome + rollouts + "--resume {W}/run --no-value-loss", 2, "--no-value-loss trains no value heads"},
      {outcome + rollouts, 2, "value_target outcome trains the value heads of a trained backbone: pass --resume"},
      {outcome + "--rollouts {W}/missing.h5 --resume {W}/run", 2, "{W}/missing.h5: no such rollout file"},
      {outcome + "--rollouts {W}/cut_rollouts.h5 --resume {W}/run", 2, "{W}/cut_rollouts.h5: not a readable HDF5 file"},
      {outcome + rollouts + "--resume {W}/run", 2, "2 rollouts leave"},
      {"train --config {CFG} --checkpoint-dir {W}/few_rollouts/outcome --value-target outcome " + rollouts +
           "--resume {W}/run", 2, "--checkpoint-dir {W}/few_rollouts/outcome: inside the rollout collection {W}/few_rollouts"},
  });
}

TEST_F(BadInput, Pipeline) {
  need_run();
  const std::string pipe = "pipeline --config {CFG} --output-dir {W}/new_pipe --data {W}/corpus.txt --tasks {W}/task.json ";
  expect_rows({
      {pipe + "--resume yes", 2, "--resume yes: expected auto"},
      {pipe + "--backbone-steps 0", 2, "--backbone-steps 0: expected"},
      {pipe + "--finetune-steps 0", 2, "--finetune-steps 0: expected"},
      {pipe + "--dynamics-steps 0", 2, "--dynamics-steps 0: expected"},
      {pipe + "--dynamics-samples 0", 2, "--dynamics-samples 0: expected"},
      {pipe + "--check-samples 0", 2, "--check-samples 0: expected"},
      {pipe + "--max-tasks -1", 2, "--max-tasks -1: expected"},
      {pipe + "--modes beams", 2, "--modes beams: expected a comma-separated list"},
      {pipe + "--save-every -1", 2, "--save-every -1: expected"},
      {pipe + "--eval-every -1", 2, "--eval-every -1: expected"},
      {pipe + "--threads -1", 2, "--threads -1: expected"},
      {pipe + "--collective-timeout -1", 2, "--collective-timeout -1: expected"},
      {pipe + "--skip-backbone", 2, "--skip-backbone: {W}/new_pipe/backbone holds no checkpoint to reuse"},
      {pipe + "--rollout-max-tasks -1", 2, "--rollout-max-tasks -1: expected"},
      {pipe + "--rollout-samples 0", 2, "--rollout-samples 0: expected"},
      {pipe + "--outcome-epochs -1", 2, "--outcome-epochs -1: expected"},
      {pipe + "--outcome-steps 0", 2, "--outcome-steps 0: expected"},
      {pipe + "--outcome-batch-size 0", 2, "--outcome-batch-size 0: expected"},
      {pipe + "--outcome-lr 0", 2, "--outcome-lr 0: expected"},
      {pipe + "--set value_target=outcome", 2,
       "value_target outcome: stage 4 samples rollouts on tasks with answers: give --rollout-tasks"},
      {pipe + "--set value_target=outcome --rollout-tasks {W}/ragged.jsonl", 2,
       "{W}/ragged.jsonl line 2: field train[0].input[1]: ragged grid"},
      {pipe + "--set value_target=outcome --rollout-tasks {W}/nowhere.jsonl", 2, "{W}/nowhere.jsonl"},
      {"pipeline --config {CFG} --output-dir {W}/new_pipe --data {W}/empty.txt --tasks {W}/task.json", 2, "empty.txt: input is empty"},
      {"pipeline --config {CFG} --output-dir {W}/new_pipe --data {W}/corpus.txt --tasks {W}/ragged.jsonl", 2,
       "{W}/ragged.jsonl line 2: field train[0].input[1]: ragged grid"},
      {"pipeline --config {CFG} --output-dir {W}/new_pipe --data {W}/missing.txt --tasks {W}/task.json", 2, "missing.txt"},
      {"pipeline --config {W}/tasks_key.json --output-dir {W}/new_pipe", 2, "key 'tasks': expected any text, got 7"},
      {"pipeline --config {W}/unknown.json --output-dir {W}/new_pipe", 2, "d_modle"},
      {"pipeline --config {CFG} --output-dir {W}/run --data {W}/corpus.txt --tasks {W}/task.json", 2, "--output-dir {W}/run is not empty and holds no pipeline.json"},
      {"pipeline --config {CFG} --output-dir {W}/existing.safetensors --data {W}/corpus.txt --tasks {W}/task.json", 2,
       "--output-dir {W}/existing.safetensors: is a file (expected a directory)"},
      {"pipeline --output-dir {W}/new_pipe", 2, "--config is required"},
      {"pipeline --config {CFG}", 2, "--output-dir is required"},
      {"--config {CFG} --output-dir {W}/new_pipe --max-tasks -1", 2, "--max-tasks -1: expected"},
  });
}

// --tensorboard-dir is an output directory as --checkpoint-dir is, checked before any
// work; --no-tensorboard excludes it.
TEST_F(BadInput, TensorBoardFlags) {
  need_dynamics();
  const std::string d = "distill --model-path {W}/run --output-path {W}/new_dist --data {W}/data ";
  expect_rows({
      {kTrain + "--tensorboard-dir ''", 2, "--tensorboard-dir \"\": expected a non-empty path"},
      {kTrain + "--tensorboard-dir {W}/existing.safetensors", 2,
       "--tensorboard-dir {W}/existing.safetensors: is a file (expected a directory)"},
      {kTrain + "--tensorboard-dir {W}/existing.safetensors/tb", 2, "{W}/existing.safetensors is a file, not a directory"},
      {kTrain + "--tensorboard-dir {W}/tb --no-tensorboard", 2, "--tensorboard-dir {W}/tb and --no-tensorboard exclude each other"},
      {kTrain + "--no-tensorboard=1", 2, "option '--no-tensorboard' does not take any arguments"},
      {kTrain + "--resume {W}/run --tensorboard-dir {W}/run/tb", 2,
       "--tensorboard-dir {W}/run/tb: inside the run directory {W}/run this command reads"},
      {d + "--tensorboard-dir ''", 2, "--tensorboard-dir \"\": expected a non-empty path"},
      {d + "--tensorboard-dir {W}/run/checkpoints/step_00000002/tb", 2,
       "--tensorboard-dir {W}/run/checkpoints/step_00000002/tb: inside the checkpoint {W}/run/checkpoints/step_00000002"},
      {d + "--tensorboard-dir {W}/existing.safetensors", 2,
       "--tensorboard-dir {W}/existing.safetensors: is a file (expected a directory)"},
      {d + "--no-tensorboard --tensorboard-dir {W}/tb", 2, "--tensorboard-dir {W}/tb and --no-tensorboard exclude each other"},
      {"pipeline --config {CFG} --output-dir {W}/new_pipe --data {W}/corpus.txt --tasks {W}/task.json --no-tensorboard=yes", 2,
       "option '--no-tensorboard' does not take any arguments"},
  });
}

// What a step costs: --profile-steps A:B (steps from 1, B not before A nor past the run's
// last step), --peak-tflops (> 0), --sync-timers (a switch), for train and distill alike.
TEST_F(BadInput, StepCostFlags) {
  need_dynamics();
  const std::string d = "distill --model-path {W}/run --output-path {W}/new_dist --data {W}/data ";
  expect_rows({
      {kTrain + "--profile-steps 0:0", 2, "--profile-steps 0:0: expected A:B, steps A to B of the run (1 <= A <= B) (steps count from 1)"},
      {kTrain + "--profile-steps 5:2", 2, "--profile-steps 5:2: expected A:B, steps A to B of the run (1 <= A <= B) (B comes before A)"},
      {kTrain + "--profile-steps a:b", 2, "--profile-steps a:b: expected A:B, steps A to B of the run (1 <= A <= B) (two step numbers joined by ':')"},
      {kTrain + "--profile-steps 3", 2, "--profile-steps 3: expected A:B"},
      {kTrain + "--profile-steps 2:-4", 2, "--profile-steps 2:-4: expected A:B"},
      {kTrain + "--profile-steps 1:99999999999999999999", 2, "--profile-steps 1:99999999999999999999: expected A:B"},
      {kTrain + "--profile-steps 2:3 --max-steps 2", 2, "--profile-steps 2:3: the run ends at step 2"},
      {kTrain + "--peak-tflops 0", 2, "--peak-tflops 0: expected a finite number > 0"},
      {kTrain + "--peak-tflops -312", 2, "--peak-tflops -312: expected a finite number > 0"},
      {kTrain + "--peak-tflops nan", 2, "--peak-tflops nan: expected"},
      {kTrain + "--sync-timers=1", 2, "option '--sync-timers' does not take any arguments"},
      {d + "--profile-steps 4:1", 2, "--profile-steps 4:1: expected A:B"},
      {d + "--peak-tflops 0", 2, "--peak-tflops 0: expected a finite number > 0"},
  });
}

// Whether `pid` blocks SIGTERM and SIGUSR1 (the SigBlk mask of /proc/PID/status): what
// crsm_train's launcher does before the program loads LibTorch.
bool blocks_preemption_signals(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("SigBlk:", 0) == 0) {
      const unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      return (mask >> (SIGTERM - 1) & 1) && (mask >> (SIGUSR1 - 1) & 1);
    }
  return false;
}

// A preemption signal from the first instruction on (here: while LibTorch loads, before
// main() runs) ends every command with status 4 and a line naming the signal, having
// written nothing.
TEST_F(BadInput, EveryCommandStopsOnASignalFromItsFirstInstruction) {
  need_dynamics();
  const TempDir logs("signal_logs");
  const std::vector<std::string> commands = {
      "prepare --input {W}/corpus.txt --output {W}/sig_data",
      "prepare-arc --output {W}/sig_arc --tasks 3 --train-tasks 3",
      kTrain + "--max-steps 2",
      "distill --model-path {W}/run --output-path {W}/sig_dyn --data {W}/data --num-samples 300 --val-samples 100",
      "assemble --backbone {W}/run --dynamics {W}/dyn --output {W}/sig_full",
      "check-dynamics --model {W}/full --data {W}/data --samples 64",
      "generate --model {W}/run --max-length 5",
      "generate --model {W}/full --deliberate --sync --max-length 5",
      "eval --model {W}/run --tasks {W}/task.json --output {W}/sig_eval.json --modes greedy",
      "rollouts --model {W}/run --tasks {W}/task.json --output-path {W}/sig_rollouts --samples 2",
      "export --checkpoint {W}/run --output {W}/sig.safetensors",
      "plot {W}/run --output {W}/sig.svg",
      "memory --config {CFG}",
      "pipeline --config {CFG} --output-dir {W}/sig_pipe --data {W}/corpus.txt --tasks {W}/task.json",
  };
  for (size_t i = 0; i < commands.size(); ++i) {
    const int sig = i % 2 ? SIGTERM : SIGUSR1;
    const std::string name = sig == SIGTERM ? "SIGTERM" : "SIGUSR1";
    const std::string command = substitute(commands[i]);
    SCOPED_TRACE(name + " to crsm_train " + command);
    const std::string before = snapshot();
    const auto job = spawn(crsm_train(command), logs.str("command" + std::to_string(i) + ".log"));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!blocks_preemption_signals(job.pid) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    ASSERT_TRUE(blocks_preemption_signals(job.pid)) << "the signals were never blocked while the program loads";
    ::kill(job.pid, sig);
    const int status = wait_for(job, 120);
    const std::string log = read_file(job.log);
    EXPECT_EQ(status, 4) << log;
    EXPECT_NE(log.find("preempted by " + name), std::string::npos) << log;
    for (const char* internal : kInternals) EXPECT_EQ(log.find(internal), std::string::npos) << log;
    EXPECT_EQ(snapshot(), before) << "the command changed the work directory:\n" << log;
  }
}

// The table grows with the product: every command crsm_train lists, and every option of
// it that takes a value other than free text, has at least one row above.
TEST_F(BadInput, EveryCommandAndOptionHasARow) {
  const std::string table = read_file(source_path("tests/cli/test_bad_input.cpp"));
  const auto usage = run_command(crsm_train("--help")).output;
  const std::regex command_line("\n  ([a-z-]+) +[a-z]");
  int commands = 0;
  for (auto c = std::sregex_iterator(usage.begin(), usage.end(), command_line); c != std::sregex_iterator(); ++c) {
    const std::string command = (*c)[1];
    ++commands;
    const auto help = run_command(crsm_train(command + " --help")).output;
    // "  --max-steps arg   stop after ... [an integer >= 1]": options that take a value.
    const std::regex option_line("\n  --([a-z-]+) arg +([^\\[]*)\\[([^\\]]*)\\]");
    int options = 0;
    for (auto o = std::sregex_iterator(help.begin(), help.end(), option_line); o != std::sregex_iterator(); ++o) {
      ++options;
      if ((*o)[3] == "any text") continue;
      const std::string flag = "--" + (*o)[1].str();
      EXPECT_NE(table.find(flag + " "), std::string::npos) << command << " " << flag << " has no row";
    }
    EXPECT_GT(options, 0) << command << " --help lists no options:\n" << help;
  }
  EXPECT_GE(commands, 6) << usage;
}

// Every benchmark program takes its command line alike: --help (status 0), --json, and
// an unknown flag or a value given to a switch refused with status 2; its default config
// is found from any directory.
#ifdef CRSM_BENCH_DIR
TEST(Benchmarks, TakeTheirCommandLineAlike) {
  for (const char* bench : {"crsm_bench", "crsm_bench_dist", "crsm_bench_dynamics", "crsm_bench_distill", "crsm_bench_search"}) {
    SCOPED_TRACE(bench);
    const std::string bin = std::string(CRSM_BENCH_DIR) + "/" + bench;
    const auto help = run_command(bin + " --help");
    EXPECT_EQ(help.status, 0) << help.output;
    EXPECT_NE(help.output.find("usage: "), std::string::npos) << help.output;
    EXPECT_NE(help.output.find("--json"), std::string::npos) << help.output;
    for (const char* bad : {"--frobnicate", "--json=3", "stray"}) {
      const auto r = run_command(bin + " " + bad);
      EXPECT_EQ(r.status, 2) << bad << ": " << r.output;
      EXPECT_NE(r.output.find(std::string(bench) + ": "), std::string::npos) << r.output;
      for (const char* internal : kInternals) EXPECT_EQ(r.output.find(internal), std::string::npos) << r.output;
    }
  }
  const TempDir scratch("bench_json");
  const auto writer = run_command("cd / && " + std::string(CRSM_BENCH_DIR) + "/crsm_bench_distill --json --rows 2048 --dir " +
                                  scratch.str());
  ASSERT_EQ(writer.status, 0) << writer.output;
  std::stringstream lines(writer.output);
  int rows = 0;
  for (std::string line; std::getline(lines, line); ++rows)
    EXPECT_TRUE(nlohmann::json::parse(line).contains("benchmark")) << line;
  EXPECT_EQ(rows, 3) << writer.output;
  const auto dist = run_command("cd / && " + std::string(CRSM_BENCH_DIR) + "/crsm_bench_dist --only checkpoint --quick --json");
  EXPECT_EQ(dist.status, 0) << dist.output;
  EXPECT_NE(dist.output.find("\"benchmark\":\"sha256 per rank\""), std::string::npos) << dist.output;
}
#endif

// --resume auto passes over a damaged checkpoint and says so; an explicit damaged path
// (a row above) is refused.
TEST_F(BadInput, ResumeAutoSkipsADamagedCheckpoint) {
  need_run();
  fs::copy(work->path() / "run" / "checkpoints" / "step_00000001",
           work->path() / "damaged_run" / "checkpoints" / "step_00000001", fs::copy_options::recursive);
  const auto r = run_command(crsm_train(substitute("train --config {CFG} --data {W}/data --checkpoint-dir "
                                                   "{W}/damaged_run --threads 1 --no-value-loss --eval-every 0 "
                                                   "--max-steps 3 --resume auto")));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("skipping damaged checkpoint"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("at step 1"), std::string::npos) << r.output;
}

}  // namespace
