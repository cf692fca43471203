// The HDF5 transition store as files: every attribute, dtype and row as h5py reads them
// (a cleanly closed file plainly, a killed writer's with SWMR), float16 equal to
// LibTorch's half conversion, the field a damaged file lacks, a resume that removes a
// leftover copy and keeps rows across chunk sizes, a master over an empty rank file read
// from another directory, and HDF5's own diagnostics silent in every thread.
// (tests/distill/test_distill.cpp covers the store's basic round trips too.)
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <hdf5.h>

#include "data/transition_store.h"
#include "data_test_util.h"

namespace {

namespace fs = std::filesystem;
using crsm::data::Compression;
using crsm::data::TransitionDtype;
using crsm::data::TransitionReader;
using crsm::data::TransitionRows;
using crsm::data::TransitionSchema;
using crsm::data::TransitionWriter;
using crsm::testing::data_error_of;

class TransitionFiles : public crsm::testing::DataTest {};

TransitionSchema schema(TransitionDtype dtype = TransitionDtype::kFloat32, std::string plan = "plan-1") {
  return {2, 8, 50, dtype, std::string(64, 'a'), std::move(plan)};
}

// Rows whose every value is a function of the row index (the same formula as
// check_transition_files.py), exact in float16 for rows below 256.
TransitionRows known_rows(int64_t first, int64_t n) {
  const auto i = torch::arange(first, first + n, torch::kFloat).view({n, 1, 1});
  const auto grid = torch::arange(16, torch::kFloat).view({1, 2, 8});
  const auto k = torch::arange(first, first + n, torch::kLong);
  return {i + grid / 8, -(i / 2) - grid / 4, k.remainder(50).to(torch::kInt), k.floor_divide(7) + (int64_t{1} << 33),
          k.remainder(7).to(torch::kInt)};
}

void expect_known(const TransitionRows& r, int64_t first) {
  const auto want = known_rows(first, r.size());
  EXPECT_TRUE(torch::equal(r.state, want.state));
  EXPECT_TRUE(torch::equal(r.delta, want.delta));
  EXPECT_TRUE(torch::equal(r.action, want.action));
  EXPECT_TRUE(torch::equal(r.seq, want.seq));
  EXPECT_TRUE(torch::equal(r.pos, want.pos));
}

// Writes rows [0, n) in blocks of `block`.
void write_known(const std::string& path, int64_t n, TransitionDtype dtype = TransitionDtype::kFloat32,
                 Compression compression = Compression::kNone, int64_t chunk = 8, int64_t block = 5) {
  TransitionWriter w(path, schema(dtype), {chunk, compression, 2});
  for (int64_t at = 0; at < n; at += block) w.append(known_rows(at, std::min(block, n - at)));
  EXPECT_EQ(w.close().rows, n);
}

// Runs check_transition_files.py (in `cwd` when given); "" when it succeeds, else
// "exit N: its output".
std::string python(const std::string& args, const std::string& cwd = "") {
  const std::string command = (cwd.empty() ? "" : "cd '" + cwd + "' && ") +
                              "/usr/bin/python3 " CRSM_SOURCE_DIR "/tests/data/check_transition_files.py " + args +
                              " 2>&1";
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  return "exit " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ": " + out;
}

// Whatever `fn` writes to file descriptor 2 (HDF5 prints its diagnostics there).
template <typename Fn>
std::string stderr_of(const fs::path& capture, Fn fn) {
  std::fflush(stderr);
  const int saved = ::dup(2);
  std::FILE* f = std::fopen(capture.c_str(), "w");
  ::dup2(::fileno(f), 2);
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  std::ifstream in(capture);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(TransitionFiles, H5pyReadsEveryAttributeDtypeAndRowOfCleanlyClosedFiles) {
  const auto plain = path("f32.h5"), small = path("f16.h5");
  write_known(plain, 37, TransitionDtype::kFloat32, Compression::kNone, 8, 5);
  write_known(small, 45, TransitionDtype::kFloat16, Compression::kGzip, 16, 7);
  const auto info = crsm::data::inspect_transition_file(small);
  EXPECT_EQ(info.path, small);
  EXPECT_EQ(info.rows, 45);
  EXPECT_EQ(info.format_version, crsm::data::kTransitionFormatVersion);
  EXPECT_EQ(info.schema.num_layers, 2);
  EXPECT_EQ(info.schema.d_model, 8);
  EXPECT_EQ(info.schema.vocab_size, 50);
  EXPECT_EQ(info.schema.dtype, TransitionDtype::kFloat16);
  EXPECT_EQ(info.schema.backbone_sha256, std::string(64, 'a'));
  EXPECT_EQ(info.schema.plan, "plan-1");
  TransitionReader a(plain), b(small);
  expect_known(a.read(0, 37), 0);
  expect_known(b.read(0, 45), 0);
  expect_known(b.read(44, 1), 44);
  EXPECT_EQ(a.read(37, 0).size(), 0);
  EXPECT_NE(data_error_of([&] { b.read(40, 6); }).find(small + ": rows [40, 46) are outside"), std::string::npos);
  EXPECT_NE(data_error_of([&] { b.read(-1, 2); }).find(small), std::string::npos);
  EXPECT_EQ(python("verify plain " + plain + " 37 float32 plan-1 " + small + " 45 float16 plan-1"), "");
}

TEST_F(TransitionFiles, Float16StorageEqualsLibTorchHalfConversion) {
  const auto file = path("h.h5");
  torch::manual_seed(3);
  const int64_t n = 64;
  // Ordinary values, values that round (ties included), subnormals and values past
  // float16's range: stored as torch rounds them, read back as float32.
  auto state = torch::randn({n, 2, 8}) * 3;
  auto delta = torch::randn({n, 2, 8}) * 1e-5;
  state[0][0] = torch::tensor({65504.f, 65520.f, 1e6f, -1e6f, 6e-8f, 1e-8f, 2049.f, 2051.f});
  state[0][1] = torch::tensor({1.f + 1.f / 2048, 1.f + 3.f / 2048, -0.f, 0.1f, 1.f / 3, 3e-5f, -3e-5f, 5.96e-8f});
  TransitionRows rows{state, delta, torch::zeros({n}, torch::kInt), torch::arange(n), torch::zeros({n}, torch::kInt)};
  {
    TransitionWriter w(file, schema(TransitionDtype::kFloat16), {16, Compression::kGzip, 2});
    w.append(rows);
  }
  const auto back = TransitionReader(file).read(0, n);
  EXPECT_EQ(back.state.scalar_type(), torch::kFloat);
  const auto want_state = state.to(torch::kHalf).to(torch::kFloat), want_delta = delta.to(torch::kHalf).to(torch::kFloat);
  EXPECT_TRUE(torch::equal(back.state, want_state)) << (back.state - want_state).abs().max();
  EXPECT_TRUE(torch::equal(back.delta, want_delta)) << (back.delta - want_delta).abs().max();
  EXPECT_TRUE(torch::equal(back.state.signbit(), want_state.signbit()));
}

TEST_F(TransitionFiles, ABlockOfTheWrongShapeOrTypeIsRefusedNamingTheTensor) {
  TransitionWriter w(path("s.h5"), schema(), {8, Compression::kNone, 2});
  const auto refused = [&](TransitionRows r) {
    try {
      w.append(std::move(r));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  auto r = known_rows(0, 4);
  r.state = torch::zeros({4, 2, 9});
  EXPECT_NE(refused(r).find("state"), std::string::npos);
  r = known_rows(0, 4);
  r.delta = r.delta.to(torch::kDouble);
  EXPECT_NE(refused(r).find("delta"), std::string::npos);
  r = known_rows(0, 4);
  r.seq = r.seq.to(torch::kInt);
  EXPECT_NE(refused(r).find("seq"), std::string::npos);
  r = known_rows(0, 4);
  r.pos = r.pos.narrow(0, 0, 3);
  EXPECT_NE(refused(r).find("pos"), std::string::npos);
  w.append(known_rows(0, 4));
  EXPECT_EQ(w.close().rows, 4);
  expect_known(TransitionReader(path("s.h5")).read(0, 4), 0);
}

TEST_F(TransitionFiles, InspectNamesThePathAndTheMissingOrMistypedField) {
  const auto good = path("good.h5");
  write_known(good, 20);
  struct Case {
    const char* kind;
    const char* arg;
    const char* named;  // what the message must name after the path
  };
  const Case cases[] = {
      {"drop-dataset", "delta", "/delta"},
      {"drop-dataset", "pos", "/pos"},
      {"drop-attr", "backbone_sha256", "'backbone_sha256'"},
      {"drop-attr", "vocab_size", "'vocab_size'"},
      {"format-version", "2", "'format_version' is 2"},
      {"dtype-attr", "float64", "'dtype'"},
      {"flat-dataset", "state", "/state"},
      {"float-dataset", "action", "/action"},
  };
  std::string specs;
  for (size_t i = 0; i < std::size(cases); ++i)
    specs += std::string(" ") + cases[i].kind + " " + cases[i].arg + " " + path("bad" + std::to_string(i) + ".h5");
  ASSERT_EQ(python("damage " + good + specs), "");
  for (size_t i = 0; i < std::size(cases); ++i) {
    const auto bad = path("bad" + std::to_string(i) + ".h5");
    const auto message = data_error_of([&] { crsm::data::inspect_transition_file(bad); });
    EXPECT_EQ(message.rfind(bad + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(cases[i].named), std::string::npos) << cases[i].kind << " " << cases[i].arg << ": " << message;
    EXPECT_NE(data_error_of([&] { TransitionWriter(bad, schema()); }).find(bad), std::string::npos);
  }
  // The first half of a valid file, an empty file and a missing one.
  const auto half = path("half.h5");
  fs::copy_file(good, half);
  fs::resize_file(half, fs::file_size(good) / 2);
  EXPECT_NE(data_error_of([&] { crsm::data::inspect_transition_file(half); })
                .find(half + ": not a readable HDF5 file (truncated"),
            std::string::npos);
  EXPECT_NE(data_error_of([&] { TransitionWriter(half, schema()); }).find(half), std::string::npos);
  const auto empty = write_file("empty.h5", "");
  EXPECT_NE(data_error_of([&] { TransitionReader r(empty); }).find(empty + ": not a readable HDF5 file"),
            std::string::npos);
  EXPECT_NE(data_error_of([&] { TransitionReader r(path("none.h5")); }).find(path("none.h5")), std::string::npos);
  // check_schema names the first field that differs, but not the plan.
  const auto info = crsm::data::inspect_transition_file(good);
  auto other = schema(TransitionDtype::kFloat32, "another plan");
  EXPECT_NO_THROW(crsm::data::check_schema(info, other));
  other.vocab_size = 51;
  other.dtype = TransitionDtype::kFloat16;
  EXPECT_NE(data_error_of([&] { crsm::data::check_schema(info, other); }).find(good + ": field 'vocab_size' is 50"),
            std::string::npos);
  other.vocab_size = 50;
  EXPECT_NE(data_error_of([&] { crsm::data::check_schema(info, other); }).find(good + ": field 'dtype' is float32"),
            std::string::npos);
}

TEST_F(TransitionFiles, ResumingRemovesALeftoverCopyAndKeepsEveryRowAcrossChunkSizes) {
  const auto file = path("r.h5");
  write_known(file, 23, TransitionDtype::kFloat16, Compression::kNone, 5, 4);
  write_file("r.h5.resume", "left by a crash while resuming");
  {
    TransitionWriter w(file, schema(TransitionDtype::kFloat16), {7, Compression::kGzip, 1});
    EXPECT_EQ(w.rows(), 23);
    w.append(known_rows(23, 11));
    const auto stats = w.close();
    EXPECT_EQ(stats.rows_at_open, 23);
    EXPECT_EQ(stats.rows, 34);
  }
  EXPECT_FALSE(fs::exists(file + ".resume"));
  {
    TransitionWriter w(file, schema(TransitionDtype::kFloat16), {3, Compression::kNone, 2});
    EXPECT_EQ(w.rows(), 34);
    w.append(known_rows(34, 2));
  }
  EXPECT_FALSE(fs::exists(file + ".resume"));
  TransitionReader reader(file);
  ASSERT_EQ(reader.rows(), 36);
  expect_known(reader.read(0, 36), 0);
  // The plan is part of what a resume must match; the refusal leaves the file alone.
  EXPECT_NE(data_error_of([&] { TransitionWriter(file, schema(TransitionDtype::kFloat16, "plan-2")); })
                .find(file + ": field 'plan'"),
            std::string::npos);
  EXPECT_NE(data_error_of([&] { TransitionWriter(file, schema(TransitionDtype::kFloat32)); }).find(file + ": field 'dtype'"),
            std::string::npos);
  EXPECT_EQ(python("verify plain " + file + " 36 float16 plan-1"), "");
}

// The child queues 4 chunks and 3 rows, tells the parent once those chunks are flushed,
// queues 5 more chunks and SIGKILLs itself while its writer thread is writing them.
TEST_F(TransitionFiles, AKilledWriterKeepsWholeFlushedChunksReadableWithSwmrAndResumes) {
  const auto file = path("k.h5");
  constexpr int64_t chunk = 6;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    TransitionWriter w(file, schema(), {chunk, Compression::kGzip, 8});
    w.append(known_rows(0, 4 * chunk + 3));
    while (w.rows() > 0 && crsm::data::inspect_transition_file(file).rows < 4 * chunk) ::usleep(500);
    (void)!::write(ready[1], "x", 1);
    for (int64_t at = 4 * chunk + 3; at < 9 * chunk + 3; at += chunk) w.append(known_rows(at, chunk));
    ::raise(SIGKILL);
    ::_exit(1);
  }
  ::close(ready[1]);
  char c = 0;
  const auto got = ::read(ready[0], &c, 1);
  ::close(ready[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_EQ(got, 1);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  const auto info = crsm::data::inspect_transition_file(file);
  EXPECT_GE(info.rows, 4 * chunk);
  EXPECT_LE(info.rows, 9 * chunk);
  EXPECT_EQ(info.rows % chunk, 0);  // a partial chunk is written at close only
  expect_known(TransitionReader(file).read(0, info.rows), 0);
  // h5py must be told: the file still carries its writer's SWMR mark.
  EXPECT_NE(python("opens-plain " + file).rfind("exit 3", 0), std::string::npos);
  EXPECT_EQ(python("verify swmr " + file + " " + std::to_string(info.rows) + " float32 plan-1"), "");
  {
    TransitionWriter w(file, schema(), {chunk, Compression::kGzip, 8});
    ASSERT_EQ(w.rows(), info.rows);
    w.append(known_rows(info.rows, 100 - info.rows));
    EXPECT_EQ(w.close().rows, 100);
  }
  expect_known(TransitionReader(file).read(0, 100), 0);
  EXPECT_EQ(python("opens-plain " + file), "");  // closed cleanly now
  EXPECT_EQ(python("verify plain " + file + " 100 float32 plan-1"), "");
}

TEST_F(TransitionFiles, TheMasterSkipsEmptyRankFilesAndReadsFromAnotherDirectory) {
  fs::create_directories(dir / "c" / "train");
  const int64_t sizes[] = {13, 0, 9, 21};
  std::vector<std::string> files;
  int64_t first = 0;
  for (size_t r = 0; r < std::size(sizes); ++r) {
    files.push_back((dir / "c" / "train" / ("rank0000" + std::to_string(r) + ".h5")).string());
    TransitionWriter w(files.back(), schema(), {8, Compression::kNone, 2});
    if (sizes[r]) w.append(known_rows(first, sizes[r]));
    first += sizes[r];
  }
  const auto master = (dir / "c" / "train.h5").string();
  crsm::data::write_master_file(master, files);
  crsm::data::write_master_file(master, files);  // replaces it
  EXPECT_FALSE(fs::exists(master + ".tmp"));
  fs::rename(dir / "c", dir / "moved");
  fs::create_directories(dir / "elsewhere");
  const auto moved = (dir / "moved" / "train.h5").string();
  const auto cwd = fs::current_path();
  fs::current_path(dir / "elsewhere");
  {
    const auto info = crsm::data::inspect_transition_file(moved);
    EXPECT_EQ(info.rows, first);
    EXPECT_EQ(info.schema.plan, "plan-1");
    TransitionReader reader(moved);
    ASSERT_EQ(reader.rows(), first);
    expect_known(reader.read(0, first), 0);
    expect_known(reader.read(10, 20), 10);  // across the empty file's place
  }
  fs::current_path(cwd);
  EXPECT_EQ(python("verify plain " + moved + " " + std::to_string(first) + " float32 plan-1", (dir / "elsewhere").string()),
            "");
  // A rank file of another schema, and a master whose rank file is gone.
  const auto odd = path("odd.h5");
  {
    auto s = schema();
    s.backbone_sha256 = std::string(64, 'b');
    TransitionWriter w(odd, s, {8, Compression::kNone, 2});
  }
  auto with_odd = files;
  for (auto& f : with_odd) f = (dir / "moved" / fs::path(f).lexically_relative(dir / "c")).string();
  with_odd.push_back(odd);
  EXPECT_NE(data_error_of([&] { crsm::data::write_master_file(path("m.h5"), with_odd); }).find(odd + ": field 'backbone_sha256'"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(path("m.h5")));
  with_odd.back() = path("other_plan.h5");
  { TransitionWriter w(with_odd.back(), schema(TransitionDtype::kFloat32, "plan-2"), {8, Compression::kNone, 2}); }
  EXPECT_NE(data_error_of([&] { crsm::data::write_master_file(path("m.h5"), with_odd); })
                .find(with_odd.back() + ": field 'plan'"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(path("m.h5")) || fs::exists(path("m.h5.tmp")));
  fs::remove(dir / "moved" / "train" / "rank00002.h5");
  EXPECT_NE(data_error_of([&] { TransitionReader r(moved); }).find("rank00002.h5"), std::string::npos);
}

// A master checks that every rank file it joins is of its collection: a file of another
// plan with as many rows is refused, naming it. A rank file whose data is damaged (a
// compressed chunk that no longer inflates) fails a read through the master naming the
// rank file, not the master.
TEST_F(TransitionFiles, AMasterRefusesASwappedRankFileAndNamesADamagedOne) {
  fs::create_directories(dir / "c" / "train");
  const std::vector<std::string> files = {path("c/train/rank00000.h5"), path("c/train/rank00001.h5")};
  {
    TransitionWriter a(files[0], schema(), {8, Compression::kNone, 2});
    a.append(known_rows(0, 13));
    TransitionWriter b(files[1], schema(), {8, Compression::kNone, 2});
    b.append(known_rows(13, 9));
  }
  const auto master = path("c/train.h5");
  crsm::data::write_master_file(master, files);
  EXPECT_EQ(crsm::data::inspect_transition_file(master).sources.size(), 2u);
  fs::remove(files[1]);
  {
    TransitionWriter other(files[1], schema(TransitionDtype::kFloat32, "plan-2"), {8, Compression::kNone, 2});
    other.append(known_rows(13, 9));
  }
  const std::string swapped = data_error_of([&] { crsm::data::inspect_transition_file(master); });
  EXPECT_NE(swapped.find(files[1] + ": field 'plan' is \"plan-2\""), std::string::npos) << swapped;
  EXPECT_NE(swapped.find("another collection"), std::string::npos) << swapped;

  // Of the master's plan again, compressed, then one byte of its first chunk of /state changed.
  fs::remove(files[1]);
  write_known(files[1], 9, TransitionDtype::kFloat32, Compression::kGzip, 8, 9);
  haddr_t address = 0;
  hsize_t bytes = 0;
  {
    const hid_t f = H5Fopen(files[1].c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t ds = H5Dopen2(f, "state", H5P_DEFAULT);
    const hid_t space = H5Dget_space(ds);
    hsize_t offset[3];
    unsigned mask = 0;
    const herr_t found = H5Dget_chunk_info(ds, space, 0, offset, &mask, &address, &bytes);
    H5Sclose(space);
    H5Dclose(ds);
    ASSERT_GE(found, 0);
    H5Fclose(f);
  }
  {
    std::fstream damage(files[1], std::ios::in | std::ios::out | std::ios::binary);
    damage.seekp(static_cast<std::streamoff>(address + bytes / 2));
    const char garbage[8] = {'\x13', '\x37', '\x00', '\x7f', '\x55', '\xaa', '\x01', '\x02'};
    damage.write(garbage, sizeof garbage);
  }
  TransitionReader reader(master);  // the metadata is intact: it opens
  expect_known(reader.read(0, 13), 0);
  const std::string damaged = data_error_of([&] { reader.read(10, 8); });
  EXPECT_NE(damaged.find("come from " + files[1] + ", which cannot be read"), std::string::npos) << damaged;
}

// A file tells its compression and chunk rows; a chunk of more than HDF5's 4 GiB is
// refused before a file is made.
TEST_F(TransitionFiles, FilesTellTheirLayoutAndChunksStayUnderTheLimit) {
  const auto file = path("rank00000.h5");
  write_known(file, 12, TransitionDtype::kFloat32, Compression::kNone, 8);
  EXPECT_EQ(crsm::data::inspect_transition_file(file).compression, Compression::kNone);
  EXPECT_EQ(crsm::data::inspect_transition_file(file).chunk_rows, 8);
  { TransitionWriter w(file, schema(), {4, Compression::kGzip, 2}); }  // rewritten as it continues
  EXPECT_EQ(crsm::data::inspect_transition_file(file).compression, Compression::kGzip);
  EXPECT_EQ(crsm::data::inspect_transition_file(file).chunk_rows, 4);
  EXPECT_EQ(crsm::data::inspect_transition_file(file).rows, 12);

  // [2, 8] float32 rows: 64 bytes each.
  EXPECT_EQ(crsm::data::max_chunk_rows(schema()), ((int64_t{1} << 32) - 1) / 64);
  EXPECT_EQ(crsm::data::max_chunk_rows(schema(TransitionDtype::kFloat16)), ((int64_t{1} << 32) - 1) / 32);
  const auto big = path("big.h5");
  EXPECT_THROW(TransitionWriter(big, schema(), {crsm::data::max_chunk_rows(schema()) + 1, Compression::kNone, 2}),
               std::invalid_argument);
  EXPECT_FALSE(fs::exists(big));
  EXPECT_FALSE(fs::exists(big + ".new"));
}

// HDF5 keeps its "print every error" switch per thread in a thread-safe build (Debian's):
// failures in a reader's thread or in the writer's own thread must print nothing either.
TEST_F(TransitionFiles, HdfFailuresPrintNothingInAnyThread) {
  const auto good = path("good.h5");
  write_known(good, 16);
  const auto half = path("half.h5");
  fs::copy_file(good, half);
  fs::resize_file(half, fs::file_size(good) / 2);
  const auto text = write_file("text.h5", "not hdf5 at all");
  std::string messages;
  const auto printed = stderr_of(dir / "stderr.txt", [&] {
    std::thread t([&] {
      for (const auto& f : {half, text}) {
        messages += data_error_of([&] { crsm::data::inspect_transition_file(f); }) + "\n";
        messages += data_error_of([&] { TransitionWriter w(f, schema()); }) + "\n";
      }
      messages += data_error_of([&] { crsm::data::write_master_file(path("m.h5"), {good, half}); }) + "\n";
      TransitionReader reader(good);
      messages += data_error_of([&] { reader.read(10, 10); }) + "\n";
    });
    t.join();
  });
  EXPECT_EQ(printed, "") << messages;
  EXPECT_NE(messages.find(half + ": not a readable HDF5 file"), std::string::npos) << messages;

  // The writer's thread: in a child whose files may not grow past 64 KiB, its writes fail.
  const auto err = dir / "child_stderr.txt", what = dir / "child_error.txt";
  const auto file = path("big.h5");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::FILE* e = std::fopen(err.c_str(), "w");
    ::dup2(::fileno(e), 2);
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{1 << 16, 1 << 16};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    int code = 3;
    try {
      TransitionWriter w(file, schema(), {64, Compression::kNone, 2});
      for (int64_t at = 0; at < 2000; at += 100) w.append(known_rows(at, 100));
      w.close();
    } catch (const crsm::data::DataError& x) {
      std::ofstream(what) << x.what();
      code = 0;
    } catch (...) {
      code = 4;
    }
    std::fflush(stderr);
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: no error, 4: not a DataError";
  std::ifstream m(what), e(err);
  const std::string message(std::istreambuf_iterator<char>(m), {}), child_printed(std::istreambuf_iterator<char>(e), {});
  EXPECT_EQ(message.rfind(file + ": ", 0), 0u) << message;
  EXPECT_EQ(child_printed, "") << message;
}

}  // namespace
