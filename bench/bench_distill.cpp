// The transition writer against a plain sequential write of the same bytes to the same
// disk, measured in the same run (SPEC §7: collection waits on disk only when the queue
// is full, so the writer must keep up with the disk). Both write ROWS rows of the small
// config's shape in chunks of C rows (default 1024: distill's "auto", about 4 MiB) and flush after each chunk.
//
//   crsm_bench_distill [--rows N] [--dir DIR] [--layers L] [--d-model D] [--chunk-rows C]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "data/transition_store.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 65536, layers = 4, d_model = 128, chunk = 1024;
  std::string dir = fs::temp_directory_path().string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--rows") rows = std::stoll(argv[i + 1]);
    else if (flag == "--dir") dir = argv[i + 1];
    else if (flag == "--layers") layers = std::stoll(argv[i + 1]);
    else if (flag == "--d-model") d_model = std::stoll(argv[i + 1]);
    else if (flag == "--chunk-rows") chunk = std::stoll(argv[i + 1]);
    else {
      std::fprintf(stderr, "crsm_bench_distill: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
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

  std::printf("rows %lld of [%lld, %lld] float32 (%.1f MiB), chunks of %lld rows, flushed per chunk\n",
              static_cast<long long>(rows), static_cast<long long>(layers), static_cast<long long>(d_model), mib,
              static_cast<long long>(chunk));
  std::printf("plain sequential write: %8.1f MiB/s\n", mib / plain_s);
  std::printf("transition writer:      %8.1f MiB/s (append waited %.3f s, writer thread in HDF5 %.3f s)\n",
              mib / writer_s, stats.append_wait_s, stats.write_s);
  std::printf("writer / plain: %.0f %% (target >= 50 %%)\n", 100.0 * plain_s / writer_s);
  return 0;
}
