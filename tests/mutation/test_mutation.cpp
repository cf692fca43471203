// Mutation tests of every reader of a file a user hands us (SPEC §11): thousands of
// truncated, bit-flipped and spliced copies of a valid file, each of which must either
// load or throw one of our errors naming the file. No crash, no hang (ctest's timeout),
// no other exception type, and no allocation larger than the file justifies.
#include <gtest/gtest.h>
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>

#include <nlohmann/json.hpp>

#include "../model/test_helpers.h"
#include "../support/mutator.h"
#include "../support/scratch_dir.h"
#include "base/atomic_file.h"
#include "base/error.h"
#include "base/file_read.h"
#include "config/run_config.h"
#include "data/arc_generator.h"
#include "data/arc_task.h"
#include "data/prepare.h"
#include "data/prepared_corpus.h"
#include "data/rollout_store.h"
#include "data/transition_store.h"
#include "data/tokenizer.h"
#include "checkpoint/store.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "model/backbone.h"
#include "model/tensor_file.h"
#include "train/adamw.h"
#include "metrics/metrics_log.h"
#include "checkpoint/training_checkpoint.h"
#include "train/trainable.h"
#include "distill/dynamics_training.h"

// The largest single allocation while a reader runs, from operator new and from
// LibTorch's CPU allocator.
namespace {
std::atomic<bool> g_watching{false};
std::atomic<size_t> g_largest{0};
void note(size_t n) {
  if (!g_watching.load(std::memory_order_relaxed)) return;
  size_t seen = g_largest.load(std::memory_order_relaxed);
  while (n > seen && !g_largest.compare_exchange_weak(seen, n)) {
  }
}
}  // namespace

void* operator new(size_t n) {
  note(n);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace {

namespace fs = std::filesystem;
using crsm::testing::Mutant;
using crsm::testing::Mutator;

class WatchingAllocator final : public c10::Allocator {
 public:
  explicit WatchingAllocator(c10::Allocator* inner) : inner_(inner) {}
  c10::DataPtr allocate(size_t n) const override {
    note(n);
    return inner_->allocate(n);
  }
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }

 private:
  c10::Allocator* inner_;
};

// Mutants per reader: CRSM_MUTANTS overrides (a long local run: 100000); CRSM_MUTANT=i
// runs mutant i alone, to reproduce a failure.
std::pair<uint64_t, uint64_t> mutant_range() {
  if (const char* one = std::getenv("CRSM_MUTANT")) {
    const uint64_t i = std::strtoull(one, nullptr, 10);
    return {i, i + 1};
  }
  const char* env = std::getenv("CRSM_MUTANTS");
  return {0, env ? std::strtoull(env, nullptr, 10) : 2000};
}

class Mutation : public crsm::testing::ScratchDirTest {
 protected:
  static void SetUpTestSuite() {
    static WatchingAllocator watching(c10::GetCPUAllocator());
    c10::SetCPUAllocator(&watching, /*priority=*/100);
  }

  // Writes each mutant of `valid` over `target` and runs `read`, which must succeed or
  // throw a crsm::Error whose message contains one of `names`. `budget` bytes is the
  // most any one allocation may take (what the files read justify).
  void expect_survives(const fs::path& target, const std::function<void()>& read,
                       const std::vector<std::string>& names, size_t budget, uint64_t seed,
                       const std::string& donor = "") {
    const std::string valid = crsm::base::read_file(target.string());
    read();  // the valid file loads
    const Mutator mutator(valid, seed, donor);
    int loaded = 0, refused = 0;
    const auto [first, end] = mutant_range();
    for (uint64_t i = first; i < end; ++i) {
      const Mutant m = mutator.make(i);
      crsm::base::write_file_atomically(target.string(), m.bytes);
      std::string failure;
      g_largest = 0;
      g_watching = true;
      try {
        read();
        ++loaded;
      } catch (const crsm::Error& e) {
        ++refused;
        bool named = false;
        for (const auto& n : names) named = named || std::string(e.what()).find(n) != std::string::npos;
        if (!named) failure = std::string("the message names none of the expected files: ") + e.what();
      } catch (const std::exception& e) {
        failure = std::string("not our error type: ") + e.what();
      }
      g_watching = false;
      if (g_largest > budget)
        failure += " allocated " + std::to_string(g_largest.load()) + " bytes at once (budget " +
                   std::to_string(budget) + ")";
      ASSERT_EQ(failure, "") << target.filename() << " mutant " << i << " (seed " << seed << ", " << m.how << ")";
    }
    crsm::base::write_file_atomically(target.string(), valid);
    std::printf("%s: %d mutants loaded, %d refused\n", target.filename().c_str(), loaded, refused);
  }

  // A prepared corpus of generated text (byte tokenizer) in dir/data.
  fs::path prepared_corpus() {
    std::string text;
    for (int i = 0; i < 400; ++i) text += "line " + std::to_string(i * 7919 % 1000) + " of the corpus\n";
    crsm::base::write_file_atomically((dir / "corpus.txt").string(), text);
    crsm::data::PrepareOptions p;
    p.inputs = {(dir / "corpus.txt").string()};
    p.output_dir = (dir / "data").string();
    crsm::data::prepare_corpus(p);
    return dir / "data";
  }

  // A stage-1 checkpoint of the unit tests' tiny model, as the trainer writes it (at
  // zero stage 3 without model.safetensors: the parameters are pieces in rank files).
  fs::path checkpoint(int zero_stage = 0) {
    crsm::RunConfig config;
    config.model = crsm::testing::tiny_model_config();
    config.model.vocab_size = 258;
    crsm::model::Backbone model(config.model);
    auto comm = crsm::dist::make_local_communicator();
    const auto trainable = crsm::train::trainable_parameters(model, false);
    crsm::dist::DataParallelOptions options;
    options.zero = crsm::dist::ZeroPolicy::for_stage(zero_stage);
    crsm::dist::DataParallel dp(trainable.params, trainable.decay, *comm, options, trainable.units);
    crsm::train::AdamW optimizer(crsm::train::optimizer_slots(dp), {});
    std::vector<at::Tensor> grads;
    for (const auto& slot : optimizer.slots()) grads.push_back(torch::ones_like(slot.value));
    optimizer.step(1e-3, grads);
    crsm::checkpoint::TrainState state;
    state.step = 1;
    const auto tokenizer = crsm::data::make_byte_tokenizer();
    return crsm::checkpoint::save_train_checkpoint((dir / "checkpoints").string(), state, model, optimizer,
                                              crsm::checkpoint::sharding_of(dp.layout(), options.zero), *tokenizer,
                                              crsm::to_json(config), 0, *comm);
  }

  static size_t file_budget(const fs::path& dir_or_file) {
    size_t bytes = 0;
    if (fs::is_regular_file(dir_or_file)) return 4 * fs::file_size(dir_or_file) + (1 << 20);
    for (const auto& e : fs::recursive_directory_iterator(dir_or_file))
      if (e.is_regular_file()) bytes += e.file_size();
    return 4 * bytes + (1 << 20);
  }
};

TEST_F(Mutation, Safetensors) {
  const auto path = dir / "model.safetensors";
  crsm::model::Backbone model(crsm::testing::tiny_model_config());
  crsm::model::save_tensor_file(path.string(), crsm::model::module_tensors(*model),
                                {{"format", "crsm-backbone"}, {"config", "{\"d_model\": 20}"}});
  expect_survives(
      path,
      [&] {
        std::map<std::string, std::string> metadata;
        crsm::model::load_tensor_file(path.string(), &metadata);
      },
      {path.string()}, file_budget(path), 1);
}

// A rank file of a collection (SWMR, uncompressed, float16), read whole.
TEST_F(Mutation, TransitionFile) {
  const auto path = dir / "rank00000.h5";
  torch::manual_seed(11);  // the same valid file, so a mutant number reproduces
  {
    crsm::data::TransitionWriter w(path.string(), {2, 4, 50, crsm::data::TransitionDtype::kFloat16, std::string(64, 'c'), "p"},
                                   {8, crsm::data::Compression::kNone, 2});
    const int64_t n = 40;
    w.append({torch::randn({n, 2, 4}), torch::randn({n, 2, 4}), torch::randint(0, 50, {n}, torch::kInt),
              torch::arange(n, torch::kLong), torch::arange(n, torch::kInt)});
  }
  expect_survives(
      path,
      [&] {
        crsm::data::TransitionReader reader(path.string());
        reader.read(0, reader.rows());
      },
      {path.string()}, file_budget(path), 11);
}

// A master over two rank files, the second one damaged: read through the master, every
// mutant loads or is refused naming the rank file (not only the master that joins it).
TEST_F(Mutation, TransitionMasterOverADamagedRankFile) {
  fs::create_directories(dir / "c" / "train");
  const auto first = (dir / "c" / "train" / "rank00000.h5").string(), second = (dir / "c" / "train" / "rank00001.h5").string();
  torch::manual_seed(13);
  const crsm::data::TransitionSchema schema{2, 4, 50, crsm::data::TransitionDtype::kFloat32, std::string(64, 'c'), "p"};
  for (const auto& file : {first, second}) {
    crsm::data::TransitionWriter w(file, schema, {8, crsm::data::Compression::kGzip, 2});
    const int64_t n = 24;
    w.append({torch::randn({n, 2, 4}), torch::randn({n, 2, 4}), torch::randint(0, 50, {n}, torch::kInt),
              torch::arange(n, torch::kLong), torch::arange(n, torch::kInt)});
  }
  const auto master = (dir / "c" / "train.h5").string();
  crsm::data::write_master_file(master, {first, second});
  expect_survives(
      second,
      [&] {
        crsm::data::TransitionReader reader(master);
        reader.read(0, reader.rows());
      },
      {second}, file_budget(dir / "c"), 13);
}

// A rank file of rollouts (gzip: strings, padded tokens, float64, uint8), read whole and
// every row taken apart.
TEST_F(Mutation, RolloutFile) {
  const auto path = dir / "rollouts.h5";
  {
    const crsm::data::RolloutSchema schema{12, 9, 6, 4, 50, std::string(64, 'c'), "p"};
    crsm::data::RolloutWriter w(path.string(), schema, {4, crsm::data::Compression::kGzip, 2});
    std::vector<crsm::data::Rollout> rows;
    for (int32_t i = 0; i < 20; ++i)
      rows.push_back({"task-" + std::to_string(i / 4), i % 2, i / 4, i % 4, std::vector<int32_t>(1 + i % 9, i),
                      std::vector<int32_t>(i % 7, 2 * i), -0.5 * i, i % 5, 9, i % 3 == 0});
    w.append(crsm::data::rollout_rows(rows, schema));
  }
  expect_survives(
      path,
      [&] {
        crsm::data::RolloutReader reader(path.string());
        const auto rows = reader.read(0, reader.rows());
        for (int64_t r = 0; r < rows.size(); ++r) crsm::data::rollout_at(rows, r);
      },
      {path.string()}, file_budget(path), 17);
}

TEST_F(Mutation, DynamicsFile) {
  const auto path = dir / "dynamics.safetensors";
  crsm::model::DynamicsConfig cfg;
  cfg.num_layers = 2;
  cfg.d_model = 8;
  crsm::checkpoint::save_dynamics(path.string(), {crsm::model::LatentDynamics(cfg), {torch::zeros({2, 8}), torch::ones({2})},
                                             std::string(64, 'd')});
  expect_survives(path, [&] { crsm::checkpoint::load_dynamics(path.string()); }, {path.string()}, file_budget(path), 12);
}

TEST_F(Mutation, CheckpointManifest) {
  const fs::path ckpt = checkpoint();
  const auto read = [&] {
    std::vector<std::string> skipped;
    crsm::checkpoint::resolve_resume(ckpt.string(), ckpt.string(), &skipped, "--model");
    const auto manifest = crsm::checkpoint::read_train_manifest(ckpt.string());
    crsm::RunConfig config;
    auto model = crsm::checkpoint::load_checkpoint_model(ckpt.string(), &config);
    auto comm = crsm::dist::make_local_communicator();
    const auto trainable = crsm::train::trainable_parameters(model, crsm::checkpoint::trains_value_heads(manifest.state.stage));
    crsm::dist::DataParallel dp(trainable.params, trainable.decay, *comm, {});
    crsm::train::AdamW optimizer(crsm::train::optimizer_slots(dp), {});
    crsm::checkpoint::load_train_state(ckpt.string(), manifest, optimizer, 0, 1);
  };
  expect_survives(ckpt / "manifest.json", read, {ckpt.string()}, file_budget(ckpt), 2);
}

// Zero stage 3: the manifest's parameter_shards say where every piece of the model is;
// the rank file's pieces are read against them.
TEST_F(Mutation, StageThreeCheckpointManifest) {
  const fs::path ckpt = checkpoint(3);
  ASSERT_FALSE(fs::exists(ckpt / "model.safetensors"));
  const auto read = [&] {
    crsm::RunConfig config;
    crsm::checkpoint::load_checkpoint_model(ckpt.string(), &config);
  };
  expect_survives(ckpt / "manifest.json", read, {ckpt.string()}, file_budget(ckpt), 21);
}

// A piece listed twice passes the size checks of each piece; together they must be
// refused, as must a gap.
TEST_F(Mutation, StageThreePiecesMustCoverEachElementOnce) {
  const fs::path ckpt = checkpoint(3);
  const auto manifest_path = (ckpt / "manifest.json").string();
  const auto valid = nlohmann::json::parse(crsm::base::read_file(manifest_path));
  const auto refused = [&](const nlohmann::json& manifest, const std::string& expected) {
    crsm::base::write_file_atomically(manifest_path, manifest.dump());
    try {
      crsm::checkpoint::load_checkpoint_model(ckpt.string());
      ADD_FAILURE() << "loaded with " << expected;
    } catch (const crsm::checkpoint::CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  };
  auto twice = valid;
  auto& pieces = twice["parameter_shards"]["rank00000.safetensors"];
  pieces.push_back(pieces[0]);
  refused(twice, "twice");
  auto gap = valid;
  gap["parameter_shards"]["rank00000.safetensors"].erase(0);
  refused(gap, "cover");
}

TEST_F(Mutation, StageThreeParameterPieces) {
  const fs::path ckpt = checkpoint(3);
  const auto read = [&] {
    crsm::RunConfig config;
    crsm::checkpoint::load_checkpoint_model(ckpt.string(), &config);
  };
  expect_survives(ckpt / "rank00000.safetensors", read, {ckpt.string()}, file_budget(ckpt), 22);
}

// `latest` names the newest checkpoint; damaged, it is passed over for the newest one
// that verifies.
TEST_F(Mutation, CheckpointLatest) {
  const fs::path ckpt = checkpoint();
  const fs::path root = ckpt.parent_path();
  const auto read = [&] {
    std::vector<std::string> skipped;
    const auto found = crsm::checkpoint::resolve_checkpoint(root.string(), "--model", &skipped);
    if (found != ckpt.string()) throw std::logic_error("resolved " + found + " instead of " + ckpt.string());
  };
  expect_survives(root / "latest", read, {root.string()}, file_budget(root), 9);
}

TEST_F(Mutation, CorpusIndex) {
  const fs::path data = prepared_corpus();
  expect_survives(data / "index.json", [&] { crsm::data::PreparedCorpus::open(data.string()); },
                  {(data / "index.json").string(), data.string()}, file_budget(data), 3);
}

// A JSON Lines corpus prepared as documents: a damaged line is refused naming the file,
// and nothing is left in the output.
TEST_F(Mutation, JsonLinesCorpus) {
  std::string lines;
  for (int i = 0; i < 40; ++i)
    lines += nlohmann::json{{"id", i}, {"text", "document " + std::to_string(i * 7919 % 1000) + "\nof the corpus"}}.dump() + "\n";
  const auto path = dir / "docs.jsonl";
  crsm::base::write_file_atomically(path.string(), lines);
  const auto read = [&] {
    fs::remove_all(dir / "jsonl_data");
    crsm::data::PrepareOptions p;
    p.inputs = {path.string()};
    p.format = crsm::data::InputFormat::kJsonl;
    p.output_dir = (dir / "jsonl_data").string();
    crsm::data::prepare_corpus(p);
  };
  expect_survives(path, read, {path.string()}, file_budget(path), 15);
}

TEST_F(Mutation, TokenShard) {
  const fs::path data = prepared_corpus();
  const auto read = [&] {
    const auto corpus = crsm::data::PreparedCorpus::open(data.string());
    std::vector<int64_t> tokens(static_cast<size_t>(corpus.train.size()));
    corpus.train.read(0, corpus.train.size(), tokens.data());
  };
  expect_survives(data / "train_000.bin", read, {"train_000.bin"}, file_budget(data), 4);
}

TEST_F(Mutation, TokenizerDescriptor) {
  const fs::path data = prepared_corpus();
  expect_survives(data / "tokenizer.json", [&] { crsm::data::load_tokenizer(data.string()); },
                  {(data / "tokenizer.json").string()}, file_budget(data), 5);
}

TEST_F(Mutation, SentencePieceModel) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog\n";
  crsm::base::write_file_atomically((dir / "text.txt").string(), text);
  const auto tok = crsm::data::train_sentencepiece({(dir / "text.txt").string()}, 300);
  tok->save(dir.string());
  const auto model = dir / "tokenizer.model";
  const auto read = [&] {
    const auto loaded = crsm::data::load_sentencepiece_model(model.string());
    loaded->decode(loaded->encode("the quick brown fox"));
  };
  expect_survives(model, read, {model.string()}, file_budget(model), 6);
}

TEST_F(Mutation, MetricsLog) {
  std::string log;
  for (int step = 1; step <= 40; ++step) {
    log += "{\"step\": " + std::to_string(step) + ", \"split\": \"train\", \"loss\": " + std::to_string(5.0 / step) +
           ", \"lr\": 0.001, \"tokens_per_s\": 1000.5}\n";
    if (step % 10 == 0) log += "{\"step\": " + std::to_string(step) + ", \"split\": \"val\", \"loss\": 1.5}\n";
  }
  crsm::base::write_file_atomically((dir / "metrics.jsonl").string(), log);
  expect_survives(dir / "metrics.jsonl", [&] { crsm::metrics::read_metrics(dir.string()); },
                  {(dir / "metrics.jsonl").string()}, file_budget(dir / "metrics.jsonl"), 7);
}

TEST_F(Mutation, ArcTaskFiles) {
  crsm::data::ArcGeneratorOptions o;
  o.min_size = 2;
  o.max_size = 4;
  const auto tasks = crsm::data::generate_arc_tasks(o, 6, 9, "m");
  const auto one = dir / "task.json";
  crsm::base::write_file_atomically(one.string(), crsm::data::arc_task_json(tasks[0]));
  expect_survives(one, [&] { crsm::data::read_tasks(one.string()); }, {one.string()}, file_budget(one), 9);
  std::string lines;
  for (const auto& t : tasks) lines += crsm::data::arc_task_json(t) + "\n";
  const auto jsonl = dir / "tasks.jsonl";
  crsm::base::write_file_atomically(jsonl.string(), lines);
  expect_survives(jsonl, [&] { crsm::data::read_tasks(jsonl.string()); }, {jsonl.string()}, file_budget(jsonl), 10);
  // Read only as far as a limit: the first tasks of a damaged file.
  expect_survives(jsonl, [&] { crsm::data::read_tasks(jsonl.string(), 2); }, {jsonl.string()}, file_budget(jsonl), 14);
  const auto qa = dir / "qa.jsonl";
  crsm::base::write_file_atomically(qa.string(), "{\"prompt\": \"2+2=\", \"answer\": \"4\"}\n{\"id\": \"b\", \"prompt\": \"x\", \"answer\": \"y\"}\n");
  expect_survives(qa, [&] { crsm::data::read_tasks(qa.string()); }, {qa.string()}, file_budget(qa), 11);
}

TEST_F(Mutation, RunConfig) {
  const auto path = dir / "config.json";
  crsm::base::write_file_atomically(path.string(),
                                    crsm::base::read_file(std::string(CRSM_SOURCE_DIR) + "/configs/small.json"));
  expect_survives(path, [&] { crsm::load_run_config(path.string()); }, {path.string()}, file_budget(path), 8);
}

}  // namespace
