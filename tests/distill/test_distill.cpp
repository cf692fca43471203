// Stage 2's pieces: the collection plan, parallel-mode transitions against recurrent
// steps, the HDF5 transition store (schema, float16, gzip, resume, a killed writer, a
// truncated file, the master file read by h5py), the per-layer score, and the shuffled
// batches' exact resume.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "../support/scratch_dir.h"
#include "data/data_error.h"
#include "data/transition_store.h"
#include "dist/communicator.h"
#include "model/backbone.h"
#include "distill/delta_score.h"
#include "distill/distill_collect.h"
#include "distill/dynamics_training.h"

namespace {

namespace fs = std::filesystem;
using crsm::data::TransitionRows;
using crsm::data::TransitionSchema;
using crsm::data::TransitionWriter;
using crsm::testing::ScratchDirTest;

TransitionSchema schema(crsm::data::TransitionDtype dtype = crsm::data::TransitionDtype::kFloat32) {
  return {2, 8, 50, dtype, std::string(64, 'a'), "plan-1"};
}

// Rows whose every value is a function of the row index, so any row can be checked.
TransitionRows known_rows(int64_t first, int64_t n) {
  const auto i = torch::arange(first, first + n, torch::kFloat).view({n, 1, 1});
  const auto grid = torch::arange(16, torch::kFloat).view({1, 2, 8});
  return {i * 0.01 + grid, -(i * 0.02) + grid * 0.5, torch::arange(first, first + n, torch::kInt).remainder(50),
          torch::arange(first, first + n, torch::kLong).floor_divide(7), torch::arange(first, first + n, torch::kInt).remainder(7)};
}

void expect_known(const TransitionRows& r, int64_t first) {
  const auto want = known_rows(first, r.size());
  EXPECT_TRUE(torch::allclose(r.state, want.state, 1e-3, 1e-3));
  EXPECT_TRUE(torch::allclose(r.delta, want.delta, 1e-3, 1e-3));
  EXPECT_TRUE(torch::equal(r.action, want.action));
  EXPECT_TRUE(torch::equal(r.seq, want.seq));
  EXPECT_TRUE(torch::equal(r.pos, want.pos));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const crsm::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string run_python(const std::string& args) {
  const std::string command = "/usr/bin/python3 " CRSM_SOURCE_DIR "/tests/distill/check_transitions.py " + args + " 2>&1";
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "" : "FAILED: ") + out;
}

class TransitionStore : public ScratchDirTest {};

TEST_F(TransitionStore, RoundTripsRowsWrittenInBlocksThatDoNotAlignWithChunks) {
  const auto path = (dir / "r.h5").string();
  {
    TransitionWriter w(path, schema(), {.chunk_rows = 16, .compression = crsm::data::Compression::kNone, .queue_blocks = 2});
    for (int64_t at = 0; at < 100; at += 7) w.append(known_rows(at, std::min<int64_t>(7, 100 - at)));
    const auto stats = w.close();
    EXPECT_EQ(stats.rows, 100);
  }
  const auto info = crsm::data::inspect_transition_file(path);
  EXPECT_EQ(info.rows, 100);
  EXPECT_EQ(info.format_version, 1);
  EXPECT_EQ(info.schema.plan, "plan-1");
  EXPECT_EQ(info.schema.backbone_sha256, std::string(64, 'a'));
  crsm::data::TransitionReader reader(path);
  expect_known(reader.read(0, 100), 0);
  expect_known(reader.read(37, 20), 37);
  EXPECT_NE(error_of([&] { reader.read(90, 11); }).find(path + ": rows [90, 101) are outside"), std::string::npos);
}

TEST_F(TransitionStore, Float16AndGzipRoundTripAndH5pyReadsThem) {
  const auto path = (dir / "h.h5").string();
  {
    TransitionWriter w(path, schema(crsm::data::TransitionDtype::kFloat16),
                       {.chunk_rows = 32, .compression = crsm::data::Compression::kGzip, .queue_blocks = 4});
    w.append(known_rows(0, 50));
    w.close();
  }
  crsm::data::TransitionReader reader(path);
  const auto rows = reader.read(0, 50);
  const auto want = known_rows(0, 50);
  EXPECT_TRUE(torch::allclose(rows.state, want.state.to(torch::kHalf).to(torch::kFloat), 0, 1e-2));
  const auto described = run_python("describe " + path);
  EXPECT_NE(described.find("\"state\": {\"shape\": [50, 2, 8], \"dtype\": \"float16\""), std::string::npos) << described;
  EXPECT_NE(described.find("\"plan\": \"plan-1\""), std::string::npos) << described;
  const auto py = run_python("rows " + path + " 3 1");
  EXPECT_NE(py.find("\"seq\": [0], \"pos\": [3]"), std::string::npos) << py;
}

TEST_F(TransitionStore, ReopeningKeepsTheRowsAndRefusesAnotherSchemaNamingTheField) {
  const auto path = (dir / "r.h5").string();
  {
    TransitionWriter w(path, schema(), {.chunk_rows = 8});
    w.append(known_rows(0, 20));
  }
  {
    TransitionWriter w(path, schema(), {.chunk_rows = 8});
    EXPECT_EQ(w.rows(), 20);
    w.append(known_rows(20, 10));
    w.close();
  }
  crsm::data::TransitionReader reader(path);
  ASSERT_EQ(reader.rows(), 30);
  expect_known(reader.read(0, 30), 0);
  auto other = schema();
  other.plan = "plan-2";
  EXPECT_NE(error_of([&] { TransitionWriter(path, other); }).find(path + ": field 'plan'"), std::string::npos);
  other = schema();
  other.d_model = 9;
  EXPECT_NE(error_of([&] { TransitionWriter(path, other); }).find(path + ": field 'd_model' is 8"), std::string::npos);
  other = schema();
  other.backbone_sha256 = std::string(64, 'b');
  EXPECT_NE(error_of([&] { crsm::data::check_schema(crsm::data::inspect_transition_file(path), other); })
                .find("field 'backbone_sha256'"),
            std::string::npos);
}

// A writer killed with SIGKILL mid-stream: every flushed chunk is readable (here and by
// h5py), and a new writer keeps exactly those rows and goes on.
TEST_F(TransitionStore, AKilledWriterLeavesItsFlushedRowsAndResumesAfterThem) {
  const auto path = (dir / "k.h5").string();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    TransitionWriter w(path, schema(), {.chunk_rows = 10});
    w.append(known_rows(0, 45));
    while (crsm::data::inspect_transition_file(path).rows < 40) ::usleep(1000);
    (void)!::write(ready[1], "x", 1);
    w.append(known_rows(45, 3));
    ::pause();
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  const auto info = crsm::data::inspect_transition_file(path);
  EXPECT_EQ(info.rows, 40);  // 4 whole chunks; the 8 rows of a partial chunk were never flushed
  const auto py = run_python("describe " + path) + run_python("rows " + path + " 39 1");
  EXPECT_NE(py.find("\"pos\": {\"shape\": [40]"), std::string::npos) << py;
  EXPECT_NE(py.find("\"seq\": [5], \"pos\": [4]"), std::string::npos) << py;  // row 39, as written
  {
    TransitionWriter w(path, schema(), {.chunk_rows = 10});
    ASSERT_EQ(w.rows(), 40);
    w.append(known_rows(40, 15));
    w.close();
  }
  crsm::data::TransitionReader reader(path);
  ASSERT_EQ(reader.rows(), 55);
  expect_known(reader.read(0, 55), 0);
}

TEST_F(TransitionStore, ATruncatedOrForeignFileIsRefusedNamingIt) {
  const auto path = (dir / "t.h5").string();
  {
    TransitionWriter w(path, schema(), {.chunk_rows = 8});
    w.append(known_rows(0, 64));
  }
  fs::resize_file(path, fs::file_size(path) / 2);
  EXPECT_NE(error_of([&] { crsm::data::inspect_transition_file(path); }).find(path + ": not a readable HDF5 file"),
            std::string::npos);
  const auto text = (dir / "x.h5").string();
  std::ofstream(text) << "not hdf5";
  EXPECT_NE(error_of([&] { crsm::data::TransitionReader r(text); }).find(text + ": not a readable HDF5 file"),
            std::string::npos);
  EXPECT_NE(error_of([&] { TransitionWriter w(text, schema()); }).find(text), std::string::npos);
}

TEST_F(TransitionStore, TheMasterFileJoinsRankFilesInOrderFromAnyDirectory) {
  fs::create_directories(dir / "c" / "train");
  std::vector<std::string> files;
  for (int r = 0; r < 2; ++r) {
    files.push_back((dir / "c" / "train" / ("rank0000" + std::to_string(r) + ".h5")).string());
    TransitionWriter w(files.back(), schema(), {.chunk_rows = 8});
    w.append(known_rows(r * 30, 30));
  }
  crsm::data::write_master_file((dir / "c" / "train.h5").string(), files);
  fs::rename(dir / "c", dir / "moved");  // relative sources: the collection moves as one piece
  const auto master = (dir / "moved" / "train.h5").string();
  crsm::data::TransitionReader reader(master);
  ASSERT_EQ(reader.rows(), 60);
  expect_known(reader.read(0, 60), 0);
  const auto py = run_python("rows " + master + " 59 1");
  EXPECT_NE(py.find("\"seq\": [8], \"pos\": [3]"), std::string::npos) << py;  // row 59, from rank file 1
  EXPECT_NE(run_python("describe " + master).find("\"virtual\": true"), std::string::npos);
}

// --- the collection ---------------------------------------------------------------

TEST(CollectionPlan, EveryWorldSizeCollectsTheSameWindowsInTheSameOrder) {
  const auto plan = crsm::distill::plan_collection("train", 100000, 1000, 32, 7, "--data D");
  EXPECT_EQ(plan.windows(), 32);  // ceil(1000 / 32)
  int64_t rows = 0;
  std::set<int64_t> starts;
  for (int64_t w = 0; w < plan.windows(); ++w) {
    rows += plan.rows_of(w);
    starts.insert(plan.starts[w]);
    EXPECT_LE(plan.starts[w] + 33, 100000);
  }
  EXPECT_EQ(rows, 1000);
  EXPECT_EQ(starts.size(), 32u);
  for (int world : {1, 2, 3}) {
    int64_t next = 0, total = 0;
    for (int r = 0; r < world; ++r) {
      const auto [first, last] = plan.windows_of_rank(r, world);
      EXPECT_EQ(first, next);
      next = last;
      total += plan.rows_of_rank(r, world);
    }
    EXPECT_EQ(next, plan.windows());
    EXPECT_EQ(total, 1000);
  }
  EXPECT_EQ(crsm::distill::plan_collection("train", 100000, 1000, 32, 7, "--data D").starts, plan.starts);
  EXPECT_NE(crsm::distill::plan_collection("train", 100000, 1000, 32, 8, "--data D").starts, plan.starts);
  EXPECT_NE(error_of([] { crsm::distill::plan_collection("val", 300, 1000, 32, 7, "--data D"); })
                .find("--data D: 1000 transitions of the val split need 32 windows of 33 tokens"),
            std::string::npos);
}

// Parallel mode over a window equals the backbone's own recurrent steps (SPEC §7).
TEST(CollectTransitions, ParallelModeRowsEqualRecurrentSteps) {
  torch::manual_seed(3);
  crsm::model::ModelConfig cfg;
  cfg.vocab_size = 40;
  cfg.d_model = 16;
  cfg.d_state = 4;
  cfg.d_ffn = 32;
  cfg.num_layers = 3;
  cfg.dropout = 0;
  crsm::model::Backbone model(cfg);
  model->eval();
  const auto windows = torch::randint(0, 40, {2, 13}, torch::kLong);
  const auto rows = crsm::distill::compute_transitions(model, windows, {5, 9});
  ASSERT_EQ(rows.size(), 24);
  torch::NoGradGuard no_grad;
  auto state = model->empty_state(2);
  model->step(windows.select(1, 0), state);
  for (int64_t t = 0; t < 12; ++t) {
    const auto h = state.latents.clone();
    model->step(windows.select(1, t + 1), state);
    for (int64_t b = 0; b < 2; ++b) {
      const int64_t row = b * 12 + t;
      EXPECT_LT((rows.state[row] - h[b]).abs().max().item<double>(), 1e-4) << "t " << t;
      EXPECT_LT((rows.delta[row] - (state.latents[b] - h[b])).abs().max().item<double>(), 1e-4) << "t " << t;
      EXPECT_EQ(rows.action[row].item<int>(), windows[b][t + 1].item<int64_t>());
      EXPECT_EQ(rows.seq[row].item<int64_t>(), b == 0 ? 5 : 9);
      EXPECT_EQ(rows.pos[row].item<int>(), t);
    }
  }
}

// --- the score --------------------------------------------------------------------

TEST(DeltaScore, PerfectZeroAndMeanPredictorsScoreAsTheirDefinitions) {
  torch::manual_seed(1);
  const auto truth = torch::randn({200, 2, 4}) * torch::tensor({1.0, 3.0}).view({1, 2, 1}) + 0.5;
  const auto mean = truth.mean(0);
  const auto score = [&](const at::Tensor& predicted) {
    crsm::distill::DeltaScorer s(mean);
    s.add(predicted.narrow(0, 0, 120), truth.narrow(0, 0, 120));
    s.add(predicted.narrow(0, 120, 80), truth.narrow(0, 120, 80));
    auto local = crsm::dist::make_local_communicator();
    s.all_reduce(*local);
    return s.score();
  };
  const auto perfect = score(truth);
  EXPECT_EQ(perfect.rows, 200);
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_NEAR(perfect.r2[l], 1.0, 1e-12);
    EXPECT_NEAR(perfect.mse[l], 0.0, 1e-12);
  }
  EXPECT_TRUE(perfect.beats_trivial());
  const auto zero = score(torch::zeros_like(truth));
  const auto constant = score(mean.unsqueeze(0).expand_as(truth));
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_NEAR(zero.r2[l], zero.r2_zero[l], 1e-9);
    EXPECT_NEAR(constant.r2[l], 0.0, 1e-9);  // the split's own mean: R² is 0 by definition
    EXPECT_NEAR(constant.r2_mean[l], 0.0, 1e-9);
    const auto y = truth.select(1, static_cast<int64_t>(l)).to(torch::kDouble);
    EXPECT_NEAR(zero.mse[l], y.pow(2).mean().item<double>(), 1e-9);
    EXPECT_NEAR(zero.mae[l], y.abs().mean().item<double>(), 1e-9);
  }
  EXPECT_FALSE(constant.beats_trivial());
}

// --- the batches of dynamics training ----------------------------------------------

class DynamicsBatches : public ScratchDirTest {};

TEST_F(DynamicsBatches, RanksReadDisjointSlicesAndAPositionResumesExactly) {
  const auto path = (dir / "t.h5").string();
  {
    TransitionWriter w(path, schema(), {.chunk_rows = 16});
    w.append(known_rows(0, 300));
  }
  std::set<int64_t> seen;
  for (int rank = 0; rank < 2; ++rank) {
    crsm::distill::TransitionBatches source(path, 20, 5, rank, 2, /*block_rows=*/32, /*buffer_blocks=*/2);
    EXPECT_EQ(source.batches_per_epoch(), 15);  // 150 rows per rank, 10 per rank and step
    for (int64_t b = 0; b < source.batches_per_epoch(); ++b) {
      const auto batch = source.next();
      ASSERT_EQ(batch[0].size(0), 10);
      for (int64_t i = 0; i < 10; ++i) {
        // The row index is recoverable from the known state.
        const int64_t row = std::lround(batch[0][i][0][0].item<double>() / 0.01);
        EXPECT_EQ(rank == 0 ? row < 150 : row >= 150, true) << row;
        EXPECT_TRUE(seen.insert(row).second) << "row " << row << " twice in one epoch";
      }
    }
  }
  EXPECT_EQ(seen.size(), 300u);
  crsm::distill::TransitionBatches a(path, 20, 5, 0, 2, 32, 2), b(path, 20, 5, 0, 2, 32, 2);
  for (int i = 0; i < 22; ++i) a.next();  // into the second epoch
  b.set_position(a.position());
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(torch::equal(a.next()[0], b.next()[0]));
  crsm::distill::TransitionBatches c(path, 20, 5, 0, 2, 32, 2);
  c.next();
  EXPECT_FALSE(torch::equal(c.next()[0], crsm::distill::TransitionBatches(path, 20, 6, 0, 2, 32, 2).next()[0]));
}

}  // namespace
