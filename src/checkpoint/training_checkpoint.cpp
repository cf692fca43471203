#include "checkpoint/training_checkpoint.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "checkpoint/store.h"
#include "dist/zero_policy.h"
#include "model/random_state.h"
#include "model/tensor_file.h"
#include "config/memory_plan.h"

namespace crsm::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRngKey = "rng.cpu";
// By Stage, in its order: what manifests record.
const char* const kStageNames[] = {"backbone", "finetune", "dynamics", "outcome"};
constexpr const char* kParamPrefix = "param/";

std::string piece_key(const std::string& param, int64_t offset) {
  return kParamPrefix + param + "@" + std::to_string(offset);
}

std::string rank_file(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rank%05d.safetensors", rank);
  return buf;
}

// Every rank's digest of its own rank file, keyed by file name (on rank 0; the others
// get the same map). One all-gather of fixed-size records: 8 bytes of size, 64 hex digits.
std::map<std::string, checkpoint::FileDigest> gather_digests(dist::Communicator& comm,
                                                       const checkpoint::FileDigest& own) {
  constexpr int64_t kRecord = 8 + 64;
  auto buffer = torch::zeros({comm.world_size() * kRecord}, torch::kByte);
  auto* mine = buffer.data_ptr<uint8_t>() + comm.rank() * kRecord;
  std::memcpy(mine, &own.bytes, 8);
  std::memcpy(mine + 8, own.sha256.data(), 64);
  buffer = buffer.to(comm.device());
  comm.all_gather(buffer)->wait();
  buffer = buffer.cpu();
  std::map<std::string, checkpoint::FileDigest> out;
  for (int r = 0; r < comm.world_size(); ++r) {
    const auto* record = buffer.data_ptr<uint8_t>() + r * kRecord;
    checkpoint::FileDigest d;
    std::memcpy(&d.bytes, record, 8);
    d.sha256.assign(reinterpret_cast<const char*>(record + 8), 64);
    out[rank_file(r)] = d;
  }
  return out;
}

// The module's tensors no rank holds pieces of (parameters that do not train, buffers),
// saved whole by rank 0 when parameters are sharded. Reads names and sizes only: the
// sharded parameters' storage is released between uses.
std::vector<PieceRange> frozen_parameters(const torch::nn::Module& module, const ShardingInfo& sharding) {
  std::set<std::string> sharded;
  for (const auto& pieces : sharding.pieces_by_rank)
    for (const auto& p : pieces) sharded.insert(p.param);
  std::vector<PieceRange> out;
  for (const auto& [name, t] : model::module_tensors(module))
    if (!sharded.count(name)) out.push_back({name, 0, t.numel()});
  return out;
}

// This rank's pieces of the parameters (the values its optimizer updates) and the frozen
// tensors, under their piece keys.
void add_parameter_pieces(model::NamedTensors& out, const OptimizerState& optimizer, const torch::nn::Module& module,
                          const std::vector<PieceRange>& frozen) {
  for (const auto& piece : optimizer.pieces()) out.emplace_back(piece_key(piece.param, piece.offset), piece.value);
  if (frozen.empty()) return;
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : model::module_tensors(module)) tensors[name] = t;
  for (const auto& p : frozen) out.emplace_back(piece_key(p.param, 0), tensors.at(p.param).reshape(-1));
}

// Copies the parameter pieces of every rank file into the module's tensors, one file in
// memory at a time, checking each piece against the manifest and the model, and that
// every element of every tensor is covered.
void assemble_parameters(const std::string& dir, const TrainManifest& manifest, torch::nn::Module& module) {
  std::map<std::string, at::Tensor> targets;
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> covered;  // [begin, end) per tensor
  for (const auto& [name, t] : model::module_tensors(module)) targets[name] = t;
  torch::NoGradGuard no_grad;
  for (const auto& [file, ranges] : manifest.parameter_shards) {
    if (ranges.empty()) continue;
    const auto path = (fs::path(dir) / file).string();
    std::map<std::string, at::Tensor> held;
    for (auto& [name, t] : model::load_tensor_file(path))
      if (name.rfind(kParamPrefix, 0) == 0) held[name] = t;
    for (const auto& r : ranges) {
      const auto target = targets.find(r.param);
      if (target == targets.end())
        throw checkpoint::CheckpointError(manifest.path + ": \"parameter_shards." + file + "\" names " + r.param +
                                    ", which the model does not have");
      const auto piece = held.find(piece_key(r.param, r.offset));
      if (piece == held.end() || piece->second.numel() != r.length ||
          piece->second.scalar_type() != target->second.scalar_type())
        throw checkpoint::CheckpointError(path + ": no " + c10::toString(target->second.scalar_type()) + " piece " +
                                    piece_key(r.param, r.offset) + " of " + std::to_string(r.length) +
                                    " elements, which the manifest lists");
      if (r.offset + r.length > target->second.numel())
        throw checkpoint::CheckpointError(manifest.path + ": piece " + piece_key(r.param, r.offset) + " of " +
                                    std::to_string(r.length) + " elements runs past the " +
                                    std::to_string(target->second.numel()) + " of " + r.param);
      target->second.view(-1).narrow(0, r.offset, r.length).copy_(piece->second.reshape(-1));
      covered[r.param].emplace_back(r.offset, r.offset + r.length);
    }
  }
  for (const auto& [name, t] : targets) {
    auto& ranges = covered[name];
    std::sort(ranges.begin(), ranges.end());
    int64_t end = 0;
    for (const auto& [lo, hi] : ranges) {
      if (lo != end)
        throw checkpoint::CheckpointError(manifest.path + ": \"parameter_shards\" " +
                                    (lo < end ? "cover elements of " + name + " twice, from " + std::to_string(lo)
                                              : "leave elements " + std::to_string(end) + " to " + std::to_string(lo) +
                                                    " of " + name + " uncovered"));
      end = hi;
    }
    if (end != t.numel())
      throw checkpoint::CheckpointError(manifest.path + ": \"parameter_shards\" cover " + std::to_string(end) + " of the " +
                                  std::to_string(t.numel()) + " elements of " + name);
  }
}

}  // namespace

std::string to_string(Stage stage) { return kStageNames[static_cast<size_t>(stage)]; }

ShardingInfo sharding_of(const dist::FlatLayout& layout, const dist::ZeroPolicy& zero) {
  ShardingInfo info;
  info.zero = zero;
  const bool sharded = zero.sharded_optimizer();
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
                                  const CheckpointContents& contents, const OptimizerState& optimizer,
                                  const ShardingInfo& sharding, int keep_last, dist::Communicator& comm) {
  const int rank = comm.rank();
  const std::string tmp = (fs::path(root) / (checkpoint::checkpoint_name(state.step) + ".tmp")).string();
  if (rank == 0) checkpoint::begin_checkpoint(root, state.step);
  comm.barrier();

  model::NamedTensors mine;
  if (!sharding.pieces_by_rank.at(static_cast<size_t>(rank)).empty()) mine = optimizer.state();
  mine.emplace_back(kRngKey, model::random_state(at::kCPU));
  const std::vector<PieceRange> frozen = sharding.zero.sharded_parameters() && rank == 0
                                             ? frozen_parameters(*contents.module, sharding)
                                             : std::vector<PieceRange>{};
  if (sharding.zero.sharded_parameters()) add_parameter_pieces(mine, optimizer, *contents.module, frozen);
  const auto own = (fs::path(tmp) / rank_file(rank)).string();
  model::save_tensor_file(own, mine);
  // Each rank hashes its own file, in parallel; the gather also tells rank 0 that every
  // rank's file is complete and synced, which the manifest must wait for.
  const auto digests = gather_digests(comm, checkpoint::digest_file(own));

  std::string final_dir;
  if (rank == 0) {
    for (int r = 0; r < comm.world_size(); ++r)
      if (!fs::exists(fs::path(tmp) / rank_file(r)))
        throw checkpoint::CheckpointError(tmp + ": rank " + std::to_string(r) + "'s file " + rank_file(r) +
                                    " is missing after every rank reported it written");
    if (!sharding.zero.sharded_parameters())
      model::save_tensor_file((fs::path(tmp) / kModelFile).string(), model::module_tensors(*contents.module));
    if (contents.write_files) contents.write_files(tmp);
    TrainManifest m;
    m.world_size = comm.world_size();
    m.zero_stage = sharding.zero.stage;
    m.state = state;
    m.config = contents.config;
    for (size_t r = 0; r < sharding.pieces_by_rank.size(); ++r) {
      const std::string file = rank_file(static_cast<int>(r));
      m.optimizer_shards[file] = sharding.pieces_by_rank[r];
      if (!sharding.zero.sharded_parameters()) continue;
      m.parameter_shards[file] = sharding.pieces_by_rank[r];
      if (r == 0) m.parameter_shards[file].insert(m.parameter_shards[file].end(), frozen.begin(), frozen.end());
    }
    nlohmann::json manifest = train_manifest_json(m);
    for (const auto& [key, value] : contents.manifest_extra.items()) manifest[key] = value;
    final_dir = checkpoint::commit_checkpoint(root, tmp, manifest, keep_last, digests);
  }
  final_dir = dist::broadcast_string(comm, final_dir, 0);
  return final_dir;
}

std::string save_train_checkpoint(const std::string& root, const TrainState& state,
                                  model::Backbone& model, const OptimizerState& optimizer,
                                  const ShardingInfo& sharding, const data::Tokenizer& tokenizer,
                                  const nlohmann::json& config, int keep_last,
                                  dist::Communicator& comm) {
  CheckpointContents contents;
  contents.module = model.get();
  contents.write_files = [&](const std::string& dir) { tokenizer.save(dir); };
  contents.config = config;
  return save_train_checkpoint(root, state, contents, optimizer, sharding, keep_last, comm);
}

nlohmann::json train_manifest_json(const TrainManifest& m) {
  const auto shards = [](const std::map<std::string, std::vector<PieceRange>>& by_file) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [file, pieces] : by_file) {
      j[file] = nlohmann::json::array();
      for (const auto& p : pieces) j[file].push_back({p.param, p.offset, p.length});
    }
    return j;
  };
  const TrainState& s = m.state;
  nlohmann::json j = {
      {"step", s.step},
      {"epoch", s.sampler.epoch},
      {"world_size", m.world_size},
      {"zero_stage", m.zero_stage},
      {"stage", to_string(s.stage)},
      {"value_loss", trains_value_heads(s.stage)},
      {"sampler", {{"epoch", s.sampler.epoch}, {"batch", s.sampler.batch}}},
      {"log_window", {{"steps", s.window.steps}, {"sums", s.window.sums}, {"seconds", s.window.seconds}}},
      {"rng", {{"cpu", std::string("tensor ") + kRngKey + " of each rank file"}}},
      {"optimizer_shards", shards(m.optimizer_shards)},
      {"config", m.config},
  };
  if (!m.parameter_shards.empty()) j["parameter_shards"] = shards(m.parameter_shards);
  return j;
}

TrainManifest read_train_manifest(const std::string& dir) {
  TrainManifest m;
  m.path = (fs::path(dir) / kManifestFile).string();
  const nlohmann::json j = checkpoint::read_manifest(dir);
  const auto field = [&](const nlohmann::json& object, const char* key, const Constraint& c,
                         const std::string& where) -> const nlohmann::json& {
    if (!object.is_object() || !object.contains(key))
      throw checkpoint::CheckpointError(m.path + ": missing \"" + where + key + "\"");
    const auto& v = object.at(key);
    if (!c.allows(v))
      throw checkpoint::CheckpointError(m.path + ": \"" + where + key + "\": expected " + c.expected() + ", got " +
                                  v.dump());
    return v;
  };
  const Constraint count = Constraint::integer(0);
  m.state.step = field(j, "step", count, "").get<int64_t>();
  m.world_size = field(j, "world_size", Constraint::integer(1, 1 << 20), "").get<int>();
  m.zero_stage = field(j, "zero_stage", config_constraint("zero_stage"), "").get<int>();
  field(j, "value_loss", Constraint::boolean(), "");  // written for readers that predate "stage"
  const auto& sampler = j.contains("sampler") ? j["sampler"] : nlohmann::json();
  m.state.sampler.epoch = field(sampler, "epoch", count, "sampler.").get<int64_t>();
  m.state.sampler.batch = field(sampler, "batch", count, "sampler.").get<int64_t>();
  const auto stage = field(j, "stage", Constraint::word({std::begin(kStageNames), std::end(kStageNames)}), "")
                         .get<std::string>();
  m.state.stage = static_cast<Stage>(
      std::find(std::begin(kStageNames), std::end(kStageNames), stage) - std::begin(kStageNames));
  // Checkpoints written before the window was saved resume with an empty one.
  if (j.contains("log_window")) {
    const auto& w = j["log_window"];
    m.state.window.steps = field(w, "steps", count, "log_window.").get<int64_t>();
    m.state.window.seconds = field(w, "seconds", Constraint::number(0, INFINITY), "log_window.").get<double>();
    const bool numbers = w.contains("sums") && w["sums"].is_array() &&
                         std::all_of(w["sums"].begin(), w["sums"].end(), [](const nlohmann::json& x) {
                           return x.is_number() && std::isfinite(x.get<double>());
                         });
    if (!numbers) throw checkpoint::CheckpointError(m.path + ": \"log_window.sums\": expected a list of finite numbers");
    const auto& sums = w["sums"];
    m.state.window.sums = sums.get<std::vector<double>>();
  }
  if (!j.contains("config") || !j["config"].is_object())
    throw checkpoint::CheckpointError(m.path + ": \"config\": expected a JSON object");
  m.config = j["config"];
  const Constraint file_name = Constraint::satisfying(
      [](const std::string& name) {
        return name.size() == 21 && name.rfind("rank", 0) == 0 && name.compare(9, 12, ".safetensors") == 0 &&
               std::all_of(name.begin() + 4, name.begin() + 9, [](char c) { return c >= '0' && c <= '9'; });
      },
      "a rank file name");
  const auto shards = [&](const char* key, bool required) {
    std::map<std::string, std::vector<PieceRange>> out;
    if (!required && !j.contains(key)) return out;
    if (!j.contains(key) || !j[key].is_object())
      throw checkpoint::CheckpointError(m.path + ": \"" + key + "\": expected a JSON object");
    for (const auto& [file, ranges] : j[key].items()) {
      const std::string where = std::string(key) + "." + file;
      if (!file_name.allows(file) || !ranges.is_array())
        throw checkpoint::CheckpointError(m.path + ": \"" + where + "\": expected a rank file name and a list of pieces");
      auto& pieces = out[file];
      // No parameter has 2^48 elements: offset + length cannot overflow.
      const Constraint elements = Constraint::integer(0, int64_t{1} << 48);
      for (const auto& r : ranges) {
        if (!r.is_array() || r.size() != 3 || !r[0].is_string() || !elements.allows(r[1]) || !elements.allows(r[2]))
          throw checkpoint::CheckpointError(m.path + ": \"" + where + "\": expected pieces [name, offset, length], got " +
                                      r.dump());
        pieces.push_back({r[0].get<std::string>(), r[1].get<int64_t>(), r[2].get<int64_t>()});
      }
    }
    return out;
  };
  m.optimizer_shards = shards("optimizer_shards", true);
  m.parameter_shards = shards("parameter_shards", false);
  if (m.parameter_shards.empty() && dist::ZeroPolicy::for_stage(m.zero_stage).sharded_parameters())
    throw checkpoint::CheckpointError(m.path + ": \"parameter_shards\": a zero stage " + std::to_string(m.zero_stage) +
                                " checkpoint must list the rank files that hold the parameters");
  return m;
}

model::Backbone load_checkpoint_model(const std::string& dir, RunConfig* config) {
  const TrainManifest manifest = read_train_manifest(dir);
  const RunConfig parsed = parse_run_config(manifest.config, manifest.path + " config");
  const double have = checkpoint_weight_bytes(dir, manifest);
  const double need = planned_bytes_per_rank(parsed, MemoryUse::kInference, 1, 0);
  const std::string files = manifest.parameter_shards.empty() ? (fs::path(dir) / kModelFile).string()
                                                              : "the rank files of " + dir;
  if (need > have)
    throw checkpoint::CheckpointError(manifest.path + ": its config describes a model of " + format_bytes(need) +
                                " of weights, but " + files + " hold " + format_bytes(have));
  check_fits_in_memory(parsed, MemoryUse::kInference, 1, 1, 0, manifest.path + " config");
  model::Backbone model(parsed.model);
  load_checkpoint_weights(dir, model);
  if (config) *config = parsed;
  return model;
}

void load_checkpoint_weights(const std::string& dir, model::Backbone& model) {
  const TrainManifest manifest = read_train_manifest(dir);
  if (!manifest.parameter_shards.empty()) return assemble_parameters(dir, manifest, *model);
  const auto path = (fs::path(dir) / kModelFile).string();
  model::load_module_tensors(*model, model::load_tensor_file(path), path);
}

double checkpoint_weight_bytes(const std::string& dir, const TrainManifest& manifest) {
  std::vector<std::string> files;
  if (manifest.parameter_shards.empty()) files.push_back(kModelFile);
  for (const auto& [file, ranges] : manifest.parameter_shards) files.push_back(file);
  double bytes = 0;
  for (const auto& file : files) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(dir) / file, ec);
    if (ec) throw checkpoint::CheckpointError((fs::path(dir) / file).string() + ": cannot be read (" + ec.message() + ")");
    bytes += static_cast<double>(size);
  }
  return bytes;
}

uint64_t rank_seed(int64_t seed, int rank) {
  return static_cast<uint64_t>(seed) * 1000003ULL + static_cast<uint64_t>(rank);
}

TrainState load_train_state(const std::string& dir, const TrainManifest& manifest, OptimizerState& optimizer,
                            int rank, int64_t seed) {
  const std::string own = rank_file(rank);
  const auto mine = optimizer.pieces();
  std::vector<OptimizerState::SavedFile> files;
  std::optional<at::Tensor> rng;
  for (const auto& [file, ranges] : manifest.optimizer_shards) {
    bool needed = false;
    for (const auto& range : ranges)
      for (const auto& piece : mine)
        if (piece.param == range.param && piece.offset < range.offset + range.length &&
            range.offset < piece.offset + piece.value.numel())
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
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [](const auto& t) { return t.first.rfind(kParamPrefix, 0) == 0; }),
                  tensors.end());
    if (needed) files.push_back({path, std::move(tensors)});
  }
  optimizer.load_state(files, dir);

  if (rng) {
    model::set_random_state(at::kCPU, *rng);
  } else if (!manifest.optimizer_shards.count(own)) {
    // A rank the saved run did not have: a fresh stream, distinct per rank and step.
    torch::manual_seed(rank_seed(seed, rank) + static_cast<uint64_t>(manifest.state.step) * 7919ULL);
  }
  return manifest.state;
}

}  // namespace crsm::checkpoint
