#include "train/train_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "dist/checkpoint_store.h"
#include "dist/zero_policy.h"
#include "model/tensor_file.h"
#include "train/memory_fit.h"

namespace crsm::train {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kRngKey = "rng.cpu";

std::string rank_file(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rank%05d.safetensors", rank);
  return buf;
}

at::Tensor cpu_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const at::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// Every rank's digest of its own rank file, keyed by file name (on rank 0; the others
// get the same map). One all-gather of fixed-size records: 8 bytes of size, 64 hex digits.
std::map<std::string, dist::FileDigest> gather_digests(dist::Communicator& comm,
                                                       const dist::FileDigest& own) {
  constexpr int64_t kRecord = 8 + 64;
  auto buffer = torch::zeros({comm.world_size() * kRecord}, torch::kByte);
  auto* mine = buffer.data_ptr<uint8_t>() + comm.rank() * kRecord;
  std::memcpy(mine, &own.bytes, 8);
  std::memcpy(mine + 8, own.sha256.data(), 64);
  buffer = buffer.to(comm.device());
  comm.all_gather(buffer)->wait();
  buffer = buffer.cpu();
  std::map<std::string, dist::FileDigest> out;
  for (int r = 0; r < comm.world_size(); ++r) {
    const auto* record = buffer.data_ptr<uint8_t>() + r * kRecord;
    dist::FileDigest d;
    std::memcpy(&d.bytes, record, 8);
    d.sha256.assign(reinterpret_cast<const char*>(record + 8), 64);
    out[rank_file(r)] = d;
  }
  return out;
}

}  // namespace

ShardingInfo sharding_of(const dist::FlatLayout& layout, int zero_stage) {
  ShardingInfo info;
  info.zero_stage = zero_stage;
  const bool sharded = dist::ZeroPolicy::for_stage(zero_stage).sharded_optimizer();
  for (int r = 0; r < layout.world_size(); ++r) {
    std::vector<PieceRange> pieces;
    // Optimizer state every rank holds whole is saved once, by rank 0.
    if (sharded || r == 0)
      for (const auto& seg : layout.owned_segments(r, sharded))
        pieces.push_back({layout.params()[static_cast<size_t>(seg.param)].info.name,
                          seg.param_offset, seg.length});
    info.pieces_by_rank.push_back(std::move(pieces));
  }
  return info;
}

std::string save_train_checkpoint(const std::string& root, const TrainState& state,
                                  const CheckpointContents& contents, const AdamW& optimizer,
                                  const ShardingInfo& sharding, int keep_last, dist::Communicator& comm) {
  const int rank = comm.rank();
  const std::string tmp = (fs::path(root) / (dist::checkpoint_name(state.step) + ".tmp")).string();
  if (rank == 0) dist::begin_checkpoint(root, state.step);
  comm.barrier();

  model::NamedTensors mine;
  if (!sharding.pieces_by_rank.at(static_cast<size_t>(rank)).empty()) mine = optimizer.state();
  mine.emplace_back(kRngKey, cpu_rng_state());
  const auto own = (fs::path(tmp) / rank_file(rank)).string();
  model::save_tensor_file(own, mine);
  // Each rank hashes its own file, in parallel; the gather also tells rank 0 that every
  // rank's file is complete and synced, which the manifest must wait for.
  const auto digests = gather_digests(comm, dist::digest_file(own));

  std::string final_dir;
  if (rank == 0) {
    for (int r = 0; r < comm.world_size(); ++r)
      if (!fs::exists(fs::path(tmp) / rank_file(r)))
        throw dist::CheckpointError(tmp + ": rank " + std::to_string(r) + "'s file " + rank_file(r) +
                                    " is missing after every rank reported it written");
    model::save_tensor_file((fs::path(tmp) / kModelFile).string(), model::module_tensors(*contents.module));
    if (contents.write_files) contents.write_files(tmp);
    nlohmann::json shards = nlohmann::json::object();
    for (size_t r = 0; r < sharding.pieces_by_rank.size(); ++r) {
      nlohmann::json pieces = nlohmann::json::array();
      for (const auto& p : sharding.pieces_by_rank[r]) pieces.push_back({p.param, p.offset, p.length});
      shards[rank_file(static_cast<int>(r))] = pieces;
    }
    nlohmann::json manifest = {
        {"step", state.step},
        {"epoch", state.sampler.epoch},
        {"world_size", comm.world_size()},
        {"zero_stage", sharding.zero_stage},
        {"stage", state.stage},
        {"value_loss", state.value_loss},
        {"sampler", {{"epoch", state.sampler.epoch}, {"batch", state.sampler.batch}}},
        {"log_window", {{"steps", state.window.steps}, {"sums", state.window.sums}, {"seconds", state.window.seconds}}},
        {"rng", {{"cpu", std::string("tensor ") + kRngKey + " of each rank file"}}},
        {"optimizer_shards", shards},
        {"config", contents.config},
    };
    for (const auto& [key, value] : contents.manifest_extra.items()) manifest[key] = value;
    final_dir = dist::commit_checkpoint(root, tmp, manifest, keep_last, digests);
  }
  final_dir = dist::broadcast_string(comm, final_dir, 0);
  return final_dir;
}

std::string save_train_checkpoint(const std::string& root, const TrainState& state,
                                  model::Backbone& model, const AdamW& optimizer,
                                  const ShardingInfo& sharding, const data::Tokenizer& tokenizer,
                                  const nlohmann::json& config, int keep_last,
                                  dist::Communicator& comm) {
  CheckpointContents contents;
  contents.module = model.get();
  contents.write_files = [&](const std::string& dir) { tokenizer.save(dir); };
  contents.config = config;
  return save_train_checkpoint(root, state, contents, optimizer, sharding, keep_last, comm);
}

TrainManifest read_train_manifest(const std::string& dir) {
  TrainManifest m;
  m.path = (fs::path(dir) / "manifest.json").string();
  const nlohmann::json j = dist::read_manifest(dir);
  const auto field = [&](const nlohmann::json& object, const char* key, const Constraint& c,
                         const std::string& where) -> const nlohmann::json& {
    if (!object.is_object() || !object.contains(key))
      throw dist::CheckpointError(m.path + ": missing \"" + where + key + "\"");
    const auto& v = object.at(key);
    if (!c.allows(v))
      throw dist::CheckpointError(m.path + ": \"" + where + key + "\": expected " + c.expected() + ", got " +
                                  v.dump());
    return v;
  };
  const Constraint count = Constraint::integer(0);
  m.state.step = field(j, "step", count, "").get<int64_t>();
  m.world_size = field(j, "world_size", Constraint::integer(1, 1 << 20), "").get<int>();
  m.zero_stage = field(j, "zero_stage", config_constraint("zero_stage"), "").get<int>();
  m.state.value_loss = field(j, "value_loss", Constraint::boolean(), "").get<bool>();
  const auto& sampler = j.contains("sampler") ? j["sampler"] : nlohmann::json();
  m.state.sampler.epoch = field(sampler, "epoch", count, "sampler.").get<int64_t>();
  m.state.sampler.batch = field(sampler, "batch", count, "sampler.").get<int64_t>();
  m.state.stage = field(j, "stage", Constraint::word({"backbone", "finetune", "dynamics"}), "").get<std::string>();
  // Checkpoints written before the window was saved resume with an empty one.
  if (j.contains("log_window")) {
    const auto& w = j["log_window"];
    m.state.window.steps = field(w, "steps", count, "log_window.").get<int64_t>();
    m.state.window.seconds = field(w, "seconds", Constraint::number(0, INFINITY), "log_window.").get<double>();
    const bool numbers = w.contains("sums") && w["sums"].is_array() &&
                         std::all_of(w["sums"].begin(), w["sums"].end(), [](const nlohmann::json& x) {
                           return x.is_number() && std::isfinite(x.get<double>());
                         });
    if (!numbers) throw dist::CheckpointError(m.path + ": \"log_window.sums\": expected a list of finite numbers");
    const auto& sums = w["sums"];
    m.state.window.sums = sums.get<std::vector<double>>();
  }
  if (!j.contains("config") || !j["config"].is_object())
    throw dist::CheckpointError(m.path + ": \"config\": expected a JSON object");
  m.config = j["config"];
  const Constraint file_name = Constraint::satisfying(
      [](const std::string& name) {
        return name.size() == 21 && name.rfind("rank", 0) == 0 && name.compare(9, 12, ".safetensors") == 0 &&
               std::all_of(name.begin() + 4, name.begin() + 9, [](char c) { return c >= '0' && c <= '9'; });
      },
      "a rank file name");
  if (!j.contains("optimizer_shards") || !j["optimizer_shards"].is_object())
    throw dist::CheckpointError(m.path + ": \"optimizer_shards\": expected a JSON object");
  for (const auto& [file, ranges] : j["optimizer_shards"].items()) {
    const std::string where = "optimizer_shards." + file;
    if (!file_name.allows(file) || !ranges.is_array())
      throw dist::CheckpointError(m.path + ": \"" + where + "\": expected a rank file name and a list of pieces");
    auto& pieces = m.optimizer_shards[file];
    // No parameter has 2^48 elements: offset + length cannot overflow.
    const Constraint elements = Constraint::integer(0, int64_t{1} << 48);
    for (const auto& r : ranges) {
      if (!r.is_array() || r.size() != 3 || !r[0].is_string() || !elements.allows(r[1]) || !elements.allows(r[2]))
        throw dist::CheckpointError(m.path + ": \"" + where + "\": expected pieces [name, offset, length], got " +
                                    r.dump());
      pieces.push_back({r[0].get<std::string>(), r[1].get<int64_t>(), r[2].get<int64_t>()});
    }
  }
  return m;
}

model::Backbone load_checkpoint_model(const std::string& dir, RunConfig* config) {
  const TrainManifest manifest = read_train_manifest(dir);
  const RunConfig parsed = parse_run_config(manifest.config, manifest.path + " config");
  const auto weights = fs::path(dir) / kModelFile;
  std::error_code ec;
  const double have = static_cast<double>(fs::file_size(weights, ec));
  const double need = planned_bytes_per_rank(parsed, MemoryUse::kInference, 1, 0);
  if (ec || need > have)
    throw dist::CheckpointError(manifest.path + ": its config describes a model of " + format_bytes(need) +
                                " of weights, but " + weights.string() + " holds " +
                                (ec ? "nothing (" + ec.message() + ")" : format_bytes(have)));
  check_fits_in_memory(parsed, MemoryUse::kInference, 1, 1, 0, manifest.path + " config");
  model::Backbone model(parsed.model);
  load_checkpoint_weights(dir, model);
  if (config) *config = parsed;
  return model;
}

void load_checkpoint_weights(const std::string& dir, model::Backbone& model) {
  const auto path = (fs::path(dir) / kModelFile).string();
  model::load_module_tensors(*model, model::load_tensor_file(path), path);
}

uint64_t rank_seed(int64_t seed, int rank) {
  return static_cast<uint64_t>(seed) * 1000003ULL + static_cast<uint64_t>(rank);
}

TrainState load_train_state(const std::string& dir, const TrainManifest& manifest, AdamW& optimizer,
                            int rank, int64_t seed) {
  const std::string own = rank_file(rank);
  std::vector<AdamW::SavedPiece> pieces;
  std::optional<at::Tensor> rng;
  int64_t step = -1;
  for (const auto& [file, ranges] : manifest.optimizer_shards) {
    bool needed = false;
    for (const auto& range : ranges)
      for (const auto& slot : optimizer.slots())
        if (slot.param == range.param && slot.offset < range.offset + range.length &&
            range.offset < slot.offset + slot.value.numel())
          needed = true;
    // This rank's own file holds its RNG state as well; it is read once either way.
    if (!needed && file != own) continue;
    const auto path = (fs::path(dir) / file).string();
    auto tensors = model::load_tensor_file(path);
    const auto rng_at = std::find_if(tensors.begin(), tensors.end(), [](const auto& t) { return t.first == kRngKey; });
    if (rng_at != tensors.end()) {
      if (file == own) rng = rng_at->second;
      tensors.erase(rng_at);
    }
    if (!needed) continue;
    auto found = AdamW::parse_state(tensors, path, &step);
    for (auto& p : found) pieces.push_back(std::move(p));
  }
  if (step < 0 && !optimizer.slots().empty())
    throw model::TensorFileError(dir + ": no optimizer state in any rank file of the manifest");
  optimizer.load_state(pieces, step, dir);

  if (rng) {
    set_cpu_rng_state(*rng);
  } else if (!manifest.optimizer_shards.count(own)) {
    // A rank the saved run did not have: a fresh stream, distinct per rank and step.
    torch::manual_seed(rank_seed(seed, rank) + static_cast<uint64_t>(manifest.state.step) * 7919ULL);
  }
  return manifest.state;
}

}  // namespace crsm::train
