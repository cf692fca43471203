// The transition writer against a plain sequential write of the same bytes to the same
// disk, measured in the same run (SPEC §7: collection waits on disk only when the queue
// is full, so the writer must keep up with the disk). Both write ROWS rows of the small
// config's shape in chunks of C rows (default 1024: distill's "auto", about 4 MiB) and flush after each chunk.
//
//   crsm_bench_distill [--json] [--rows N] [--dir DIR] [--layers L] [--d-model D] [--chunk-rows C]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "bench_cli.h"
#include "data/transition_store.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  using crsm::Constraint;
  using crsm::cli::Option;
  const auto o = crsm::bench::parse_command_line(
      argc, argv, "usage: crsm_bench_distill [--json] [--rows N] [--dir DIR] [--layers L] [--d-model D] [--chunk-rows C]",
      {Option("rows", Constraint::integer(1, int64_t{1} << 32), "rows written by each writer").with_default("65536"),
       Option("dir", Constraint::path(), "where the two files are written, then removed (default: the temporary directory)"),
       Option("layers", Constraint::integer(1, 1 << 12), "layers of a row").with_default("4"),
       Option("d-model", Constraint::integer(1, 1 << 16), "width of a row").with_default("128"),
       Option("chunk-rows", Constraint::integer(1, 1 << 24), "rows per chunk, flushed after each").with_default("1024")});
  const crsm::bench::Report report{o.is_set("json")};
  const int64_t rows = o.integer("rows"), layers = o.integer("layers"), d_model = o.integer("d-model");
  const int64_t chunk = o.integer("chunk-rows");
  const std::string dir = o.has("dir") ? o.text("dir") : fs::temp_directory_path().string();
  torch::manual_seed(0);
  const int64_t block = 1024;  // rows per append, as a collection batch of 16 windows of 64
  crsm::data::TransitionRows sample{torch::randn({block, layers, d_model}), torch::randn({block, layers, d_model}),
                                    torch::randint(0, 258, {block}, torch::kInt), torch::arange(block, torch::kLong),
                                    torch::arange(block, torch::kInt)};
  const int64_t row_bytes = 2 * layers * d_model * 4 + 4 + 8 + 4;
  const double mib = static_cast<double>(rows * row_bytes) / (1 << 20);

  const auto plain_path = (fs::path(dir) / "crsm_bench_plain.bin").string();
  auto start = Clock::now();
  {
    std::ofstream out(plain_path, std::ios::binary);
    std::vector<char> bytes(static_cast<size_t>(chunk * row_bytes));
    std::memcpy(bytes.data(), sample.state.data_ptr(), std::min<size_t>(bytes.size(), sample.state.nbytes()));
    for (int64_t at = 0; at < rows; at += chunk) {
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      out.flush();
    }
  }
  const double plain_s = since(start);
  fs::remove(plain_path);

  const auto h5_path = (fs::path(dir) / "crsm_bench_writer.h5").string();
  fs::remove(h5_path);
  start = Clock::now();
  crsm::data::WriterStats stats;
  {
    crsm::data::TransitionWriter writer(h5_path, {layers, d_model, 258, crsm::data::TransitionDtype::kFloat32, "bench", "bench"},
                                        {chunk, crsm::data::Compression::kNone, 8});
    for (int64_t at = 0; at < rows; at += block) writer.append(sample);
    stats = writer.close();
  }
  const double writer_s = since(start);
  fs::remove(h5_path);

  using crsm::bench::format;
  report.line(format("rows %lld of [%lld, %lld] float32 (%.1f MiB), chunks of %lld rows, flushed per chunk",
                     static_cast<long long>(rows), static_cast<long long>(layers), static_cast<long long>(d_model), mib,
                     static_cast<long long>(chunk)));
  const nlohmann::json shape = {{"rows", rows}, {"layers", layers}, {"d_model", d_model}, {"chunk_rows", chunk}};
  auto fields = shape;
  fields["mib_per_s"] = mib / plain_s;
  report.row("plain sequential write", fields, format("%8.1f MiB/s", mib / plain_s));
  fields = shape;
  fields["mib_per_s"] = mib / writer_s;
  fields["append_wait_s"] = stats.append_wait_s;
  fields["hdf5_s"] = stats.write_s;
  report.row("transition writer", fields,
             format("%8.1f MiB/s (append waited %.3f s, writer thread in HDF5 %.3f s)", mib / writer_s,
                    stats.append_wait_s, stats.write_s));
  fields = shape;
  fields["ratio"] = plain_s / writer_s;
  report.row("writer / plain", fields, format("%.0f %% (target >= 50 %%)", 100.0 * plain_s / writer_s));
  return 0;
}
