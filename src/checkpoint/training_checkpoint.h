#pragma once

// Training checkpoints (SPEC §8), written by every rank together:
//   model.safetensors          the full model, written by rank 0 (zero stages 0-2)
//   rank00000.safetensors ...  one per rank: its optimizer state pieces and CPU RNG, and
//                              at zero stage 3 its pieces of the parameters
//                              ("param/<name>@<offset>"; rank 0's file also holds the
//                              frozen parameters whole): nobody gathers the model
//   tokenizer files, manifest.json (by rank 0, after every rank has written and synced)
// The manifest lists which pieces of which parameters each rank file holds (optimizer
// state under "optimizer_shards", parameter values under "parameter_shards"), so a run
// resumed at another world size or zero stage takes its own pieces from whichever
// files hold them, and a model is assembled from them one file at a time.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/run_config.h"
#include "data/batch_sampler.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "dist/flat_layout.h"
#include "dist/zero_policy.h"
#include "model/backbone.h"
#include "model/tensor_file.h"

namespace crsm::checkpoint {

// The file a checkpoint keeps the whole model in (zero stages 0-2).
inline constexpr const char* kModelFile = "model.safetensors";

// The logging window a run is in: saved with every checkpoint, so a run resumed
// mid-window reports the same means as one that never stopped.
struct LogWindow {
  int64_t steps = 0;
  std::vector<double> sums;  // per reported loss
  double seconds = 0;
};

// The stage a training run is (SPEC §10), chosen once and recorded in its checkpoints.
enum class Stage {
  kBackbone,  // stage 1: the language model ("backbone")
  kFinetune,  // stage 4: with value heads ("finetune")
  kDynamics,  // stage 2: the latent dynamics ("dynamics")
  kOutcome,   // stage 4 with value_target outcome: the value heads alone, on rollouts ("outcome")
};
std::string to_string(Stage stage);
// The value heads train (stage 4) or are frozen.
inline bool trains_value_heads(Stage stage) { return stage == Stage::kFinetune || stage == Stage::kOutcome; }

// Where a training run stands: enough, with the model and optimizer tensors, to carry
// on exactly as if it had never stopped.
struct TrainState {
  int64_t step = 0;
  data::SamplerPosition sampler;
  Stage stage = Stage::kBackbone;
  LogWindow window;
};

// What a training checkpoint keeps of an optimizer (train::AdamW is one): the pieces of
// parameters this rank updates, and its state as named tensors. Reading it back, the
// optimizer takes its pieces from the rank files that hold them, saved under any
// partition of the same parameters.
class OptimizerState {
 public:
  struct Piece {
    std::string param;   // the parameter's name
    int64_t offset = 0;  // first element of the piece within the flattened parameter
    at::Tensor value;    // the piece's values
  };
  // The state entries of one rank file, and its path for messages.
  struct SavedFile {
    std::string path;
    model::NamedTensors tensors;
  };

  virtual ~OptimizerState() = default;
  virtual std::vector<Piece> pieces() const = 0;
  virtual model::NamedTensors state() const = 0;
  // TensorFileError naming `dir` or a file when some piece is not covered or an entry is malformed.
  virtual void load_state(const std::vector<SavedFile>& files, const std::string& dir) = 0;
};

// What a checkpoint holds besides the training state and the optimizer.
struct CheckpointContents {
  const torch::nn::Module* module = nullptr;  // model.safetensors
  std::function<void(const std::string& dir)> write_files;  // rank 0's other files, if any
  nlohmann::json config;          // the manifest's "config"
  nlohmann::json manifest_extra;  // more manifest fields
};

// A piece of a parameter's optimizer state held by one rank.
struct PieceRange {
  std::string param;
  int64_t offset = 0, length = 0;
};

struct ShardingInfo {
  dist::ZeroPolicy zero;  // sharded parameters: each rank saves its pieces of them too
  std::vector<std::vector<PieceRange>> pieces_by_rank;  // world_size entries
};

// Which rank saves which pieces under `layout` and `zero` (replicated state, at stage 0,
// is saved once, by rank 0).
ShardingInfo sharding_of(const dist::FlatLayout& layout, const dist::ZeroPolicy& zero);

// What a training checkpoint's manifest.json says, read once and checked: every field
// present, of its type and in range, so a damaged manifest is refused with a
// CheckpointError naming the file and the field instead of failing wherever a field is
// first used.
struct TrainManifest {
  std::string path;  // <dir>/manifest.json, for messages
  int world_size = 1;
  int zero_stage = 0;
  TrainState state;  // step, sampler position, stage
  std::map<std::string, std::vector<PieceRange>> optimizer_shards;  // rank file -> its pieces
  // Rank file -> its parameter pieces; empty when model.safetensors holds the model.
  std::map<std::string, std::vector<PieceRange>> parameter_shards;
  nlohmann::json config;  // parsed by parse_run_config where it is used
};
// The manifest's fields as save_train_checkpoint writes them (the store adds the file
// list); read_train_manifest reads them back, so the two are one format.
nlohmann::json train_manifest_json(const TrainManifest& m);
TrainManifest read_train_manifest(const std::string& dir);

// Collective: every rank of `comm` calls it. Returns the checkpoint's directory.
std::string save_train_checkpoint(const std::string& root, const TrainState& state,
                                  const CheckpointContents& contents, const OptimizerState& optimizer,
                                  const ShardingInfo& sharding, int keep_last, dist::Communicator& comm);
// A backbone checkpoint with its tokenizer.
std::string save_train_checkpoint(const std::string& root, const TrainState& state,
                                  model::Backbone& model, const OptimizerState& optimizer,
                                  const ShardingInfo& sharding, const data::Tokenizer& tokenizer,
                                  const nlohmann::json& config, int keep_last,
                                  dist::Communicator& comm);

// Builds the model a checkpoint describes (its manifest's config) and loads its weights.
// A config whose model is larger than model.safetensors can hold (a damaged manifest) is
// refused before anything is allocated.
model::Backbone load_checkpoint_model(const std::string& dir, RunConfig* config = nullptr);

// Copies a checkpoint's weights into the model (strict: names and shapes must match),
// from model.safetensors or, at zero stage 3, piece by piece from the rank files, one
// file in memory at a time; every element must be covered.
void load_checkpoint_weights(const std::string& dir, model::Backbone& model);

// Bytes of a checkpoint's weight files (model.safetensors, or the rank files holding
// parameter pieces), for checking a manifest's config against them.
double checkpoint_weight_bytes(const std::string& dir, const TrainManifest& manifest);

// Seed of a rank's CPU random stream (dropout) in a fresh run: distinct per rank.
uint64_t rank_seed(int64_t seed, int rank);

// Fills this rank's optimizer slots from the rank files that hold them (any world size
// or zero stage), restores the CPU RNG of the same rank when the checkpoint has one
// (else seeds it from rank_seed and the step), and returns the recorded state.
// `manifest` is the checkpoint's (read_train_manifest(dir)).
TrainState load_train_state(const std::string& dir, const TrainManifest& manifest, OptimizerState& optimizer,
                            int rank, int64_t seed);

}  // namespace crsm::checkpoint
